// (e) Where the tiny FLUX forward + backward time goes. The graph is the tiny model at the perf anchors'
// shape (adapters/tiny/perf/tiny-model.mjs: batch 4, 256 image + 256 context tokens, 20 words; the loss
// mean(v²) differentiated for every weight, weights fed as inputs). onnxruntime's profiler times every
// kernel; the times are summed by op type, with MatMul/Gemm FLOP rates. Same run, same process: a plain
// MatMul with the FLOPs of all the graph's MatMul/Gemm nodes is the baseline, and the graph is also timed
// with other thread settings (spinning pools, one thread). Needs models, shapes and adapters/tiny built
// (`pnpm perf` builds everything first). Tracked ratio: the graph's MatMul-FLOP rate / the plain MatMul's.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { loadEngine, median, now, repoRoot, report, rotate, summarizeProfile } from "./perf-util.mjs";

const engine = await loadEngine();
const { Graph, grad, ops, Runtime } = engine;
const dist = (p) => import(path.join(repoRoot, p, "dist/index.js"));
const [{ parseFluxTransformerConfig }, { VOCABULARY }, tiny] = await Promise.all([
  dist("packages/models"),
  dist("packages/shapes"),
  dist("adapters/tiny"),
]).catch((e) => {
  throw new Error(`build models, shapes and adapters/tiny first (pnpm build): ${e.message}`);
});
const {
  buildTinyVelocity,
  InputWeights,
  initTinyWeights,
  TINY_TEXT_TOKENS,
  TINY_TOKEN_CHANNELS,
  TINY_TRANSFORMER_CONFIG_JSON,
} = tiny;

const B = Number(process.env.PERF_BATCH ?? 4);
const TOKENS = 256;
const REPS = Number(process.env.PERF_REPS ?? 5);
const V = VOCABULARY.length;
const config = parseFluxTransformerConfig(TINY_TRANSFORMER_CONFIG_JSON);
const weights = initTinyWeights(config, { seed: 1, vocabSize: V, textTokens: TINY_TEXT_TOKENS });
for (const w of weights.values())
  for (let i = 0; i < w.length; i++) if (w[i] === 0) w[i] = ((i % 7) - 3) * 1e-3;

let seed = 3;
const rand = (n) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 16807) % 2147483647;
    return (seed / 2147483647) * 2 - 1;
  });

const g = new Graph("tiny-train");
const iw = new InputWeights(g, "w/");
const f = (n, s) => g.input(n, "float32", s);
const inputs = {
  xt: f("xt", [B, TOKENS, TINY_TOKEN_CHANNELS]),
  t: f("t", [B]),
  context: f("context", [B, TOKENS, TINY_TOKEN_CHANNELS]),
  text: f("text", [B, TINY_TEXT_TOKENS, V]),
};
const v = buildTinyVelocity(g, config, iw, inputs).velocity;
const loss = ops.reduceMean(ops.mul(v, v));
const outputs = { loss };
for (const [i, t] of grad(loss, [...iw.inputs.values()]).entries()) outputs[`g${i}`] = t;

const feeds = {};
for (const t of g.inputs) {
  const name = t.source.name;
  if (name.startsWith("w/")) feeds[name] = weights.get(name.slice(2));
  else if (name === "t") feeds[name] = rand(B).map(Math.abs);
  else if (name === "text") {
    const a = new Float32Array(t.size);
    for (let i = 0; i < B * TINY_TEXT_TOKENS; i++) a[i * V + (i % 12 < 8 ? 2 + ((i * 7) % (V - 2)) : 0)] = 1;
    feeds[name] = a;
  } else feeds[name] = rand(t.size);
}

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
const times = Object.fromEntries(Object.keys(run).map((k) => [k, []]));
for (const k of Object.keys(run)) await run[k]();
for (let r = 0; r < REPS; r++) {
  for (const k of rotate(Object.keys(run), r)) {
    const t = now();
    await run[k]();
    times[k].push(now() - t);
  }
}
await runtime.close();
const ms = Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, Number(median(xs).toFixed(1))]));
const rate = (flops, t) => Number((flops / (t * 1e6)).toFixed(1));
const graphRate = rate(matmulFlops, ms.default);
const mmRate = rate(2 * n ** 3, ms.matmul);
report("tiny-flux-profile", {
  batch: B,
  matmul_gflop_per_step: Number((matmulFlops / 1e9).toFixed(2)),
  median_ms: ms,
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
  },
  spinning_vs_default: Number((ms.default / ms.spinning).toFixed(3)),
  one_thread_vs_default: Number((ms.default / ms.one_thread).toFixed(3)),
  matmul_one_thread_vs_default: Number((ms.matmul / ms.matmul_one_thread).toFixed(3)),
});
