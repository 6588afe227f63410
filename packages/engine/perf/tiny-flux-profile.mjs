// (e) Where the tiny FLUX forward + backward time goes. The graph is the tiny model at the perf anchors'
// shape (adapters/tiny/perf/tiny-model.mjs: batch 4, 256 image + 256 context tokens, 20 words; the loss
// mean(v²) differentiated for every weight, weights fed as inputs). onnxruntime's profiler times every
// kernel; the times are summed by op type, with MatMul/Gemm FLOP rates. Same run, same process: a plain
// MatMul with the FLOPs of all the graph's MatMul/Gemm nodes is the baseline, and the graph is also timed
// with other thread settings (spinning pools, one thread). Needs models, shapes and adapters/tiny built
// (`pnpm perf` builds everything first). Tracked ratios: the graph's MatMul-FLOP rate / the plain MatMul's,
// by wall time and by the process's CPU time.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { loadEngine, median, now, report, rotate, summarizeProfile } from "./perf-util.mjs";
import { TOKENS, tinyFluxPerfGraph } from "./tiny-flux-util.mjs";

const engine = await loadEngine();
const { Graph, ops, Runtime } = engine;
const B = Number(process.env.PERF_BATCH ?? 4);
const REPS = Number(process.env.PERF_REPS ?? 5);
const model = await tinyFluxPerfGraph(engine, B);
const { g, feeds, rand } = model;
const TINY_TEXT_TOKENS = model.textTokens;
const outputs = { loss: model.loss };
for (const [i, t] of model.gradients.entries()) outputs[`g${i}`] = t;

const runtime = new Runtime();
const dir = mkdtempSync(path.join(tmpdir(), "tiny-flux-profile-"));
let breakdown;
try {
  // 1. The profile (its own session: profiling adds a little per node). Without onnxruntime's memory
  // pattern: profiled with it, the kernels summed to 2–3× the unprofiled run (the Q·Kᵀ products 10–40 ms
  // instead of 1.9, with 60 % more page faults: fresh memory every run), while profiled without it they sum
  // to about the unprofiled run, and the unprofiled run is as fast either way (measured 273 vs 285 ms).
  const profiled = await runtime.compile(g, {
    outputs,
    profile: path.join(dir, "train"),
    memoryPattern: false,
  });
  await profiled.run(feeds);
  for (let i = 0; i < REPS; i++) await profiled.run(feeds);
  const file = await profiled.endProfiling();
  const events = JSON.parse(readFileSync(file, "utf8"));
  await profiled.dispose();
  // The first (warm-up) run is in the file too: drop its events by run order.
  const runStarts = events.filter((e) => e.name === "model_run").map((e) => e.ts);
  const after = runStarts.length > REPS ? runStarts[runStarts.length - REPS] : 0;
  // Attention at this size: batch × heads × 532 tokens with a head width of 32; its score-sized tensors
  // (B·H·L·L floats, 18 MB each) and its K = 32 products are what the model's shape makes expensive.
  const L = 2 * TOKENS + TINY_TEXT_TOKENS;
  const classify = (shapes, op) => {
    const attention = shapes.some((d) => d?.length === 4 && d[2] === L && (d[3] === L || d[3] < 128));
    if (attention) return "attention (B·H·L·L scores, B·H·L·d heads)";
    if (op === "MatMul" || op === "Gemm" || op === "FusedMatMul") return "linear layers (MatMul/Gemm)";
    return `other ${op === "Concat" || op === "Split" || op === "Transpose" || op === "Reshape" ? "layout" : "elementwise/reduce"}`;
  };
  breakdown = summarizeProfile(
    events.filter((e) => e.ts >= after),
    REPS,
    { classify },
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const matmulFlops = breakdown.ops
  .filter((o) => o.gflops)
  .reduce((s, o) => s + o.gflops * o.ms_per_run * 1e6, 0);

// 2. Timings: thread settings, and the same-FLOP plain MatMul, in alternating rounds.
const variants = {
  default: await runtime.compile(g, { outputs }),
  spinning: await runtime.compile(g, { outputs, spinning: true }),
  one_thread: await runtime.compile(g, { outputs, threads: 1 }),
};
const n = Math.round(Math.cbrt(matmulFlops / 2));
const mg = new Graph("same-flop-matmul");
const ma = mg.input("a", "float32", [n, n]);
const mb = mg.input("b", "float32", [n, n]);
const mm = await runtime.compile(mg, { outputs: { c: ops.matmul(ma, mb) } });
await mm.keep({ a: rand(n * n), b: rand(n * n) });
// The same MatMul on one thread: whether a second thread buys anything on this machine right now (cores
// that are SMT siblings, or busy with other processes, give it nothing even for a large GEMM).
const mm1 = await runtime.compile(mg, { outputs: { c: ops.matmul(ma, mb) }, threads: 1 });
await mm1.keep({ a: rand(n * n), b: rand(n * n) });
const run = {
  ...Object.fromEntries(Object.entries(variants).map(([k, s]) => [k, () => s.run(feeds)])),
  matmul: () => mm.run({}),
  matmul_one_thread: () => mm1.run({}),
};
// Wall time, and the CPU time the process spent (all threads, the session's workers included): on a machine
// shared with other processes a run waits for a core, which wall time counts and CPU time does not, so the
// CPU-time ratio is the steadier of the two there (it also charges a second thread's work in full).
const cpuMs = () => {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1000;
};
const times = Object.fromEntries(Object.keys(run).map((k) => [k, []]));
const cpuTimes = Object.fromEntries(Object.keys(run).map((k) => [k, []]));
for (const k of Object.keys(run)) await run[k]();
for (let r = 0; r < REPS; r++) {
  for (const k of rotate(Object.keys(run), r)) {
    const c = cpuMs();
    const t = now();
    await run[k]();
    times[k].push(now() - t);
    cpuTimes[k].push(cpuMs() - c);
  }
}
await runtime.close();
const medians = (table) =>
  Object.fromEntries(Object.entries(table).map(([k, xs]) => [k, Number(median(xs).toFixed(1))]));
const ms = medians(times);
const cpu = medians(cpuTimes);
const rate = (flops, t) => Number((flops / (t * 1e6)).toFixed(1));
const graphRate = rate(matmulFlops, ms.default);
const mmRate = rate(2 * n ** 3, ms.matmul);
report("tiny-flux-profile", {
  batch: B,
  matmul_gflop_per_step: Number((matmulFlops / 1e9).toFixed(2)),
  median_ms: ms,
  median_cpu_ms: cpu,
  matmul_baseline_n: n,
  matmul_baseline_gflops: mmRate,
  step_matmul_gflops: graphRate,
  kernel_ms_per_run: breakdown.kernel_ms_per_run,
  profiled_run_ms: breakdown.model_run_ms,
  by_class: breakdown.by_class,
  by_op: breakdown.ops,
  top_nodes: breakdown.top_nodes,
  ratios: {
    step_vs_same_flop_matmul: Number((graphRate / mmRate).toFixed(3)),
    step_vs_same_flop_matmul_cpu_time: Number(
      (rate(matmulFlops, cpu.default) / rate(2 * n ** 3, cpu.matmul)).toFixed(3),
    ),
  },
  spinning_vs_default: Number((ms.default / ms.spinning).toFixed(3)),
  one_thread_vs_default: Number((ms.default / ms.one_thread).toFixed(3)),
  matmul_one_thread_vs_default: Number((ms.matmul / ms.matmul_one_thread).toFixed(3)),
});
