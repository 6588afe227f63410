// (d) Session.run on a 1024³ float32 MatMul against a raw onnxruntime-node InferenceSession.run of the same
// model, with the same session options, in this process: the cost of crossing to the worker thread and
// back. Rounds alternate the variants (in a rotating order) so background load hits them alike. Variants:
//   copy  — run({ a, b }): each feed copied once into a staging buffer the worker hands back;
//   kept  — b kept in the worker with session.keep, run({ a });
//   moved — run({ a, b }, { transfer: true }) with arrays the caller gives away (made before each timed call).
// Ratios are raw_ms / engine_ms (1 = parity; target ≥ 0.9). No session here spins its thread pool: a spinning
// pool kept busy-waiting on one of the two cores after its own runs and slowed whichever variant came next
// (the raw runs measured 1.4–1.8× slower than the engine's with one in the rotation; tiny-flux-profile times
// spinning against not spinning on a whole training step instead).
import ort from "onnxruntime-node";
import { loadEngine, median, now, report, rotate } from "./perf-util.mjs";

const { Graph, ops, lower, Runtime } = await loadEngine();
const N = Number(process.env.PERF_DIM ?? 1024);
const ROUNDS = Number(process.env.PERF_ROUNDS ?? 8);
const PER_ROUND = 4;

const g = new Graph("matmul");
const a = g.input("a", "float32", [N, N]);
const b = g.input("b", "float32", [N, N]);
const c = ops.matmul(a, b);
const model = lower(g, { outputs: { c } });
// The options the engine gives a session with no big external weights (runtime.ts sessionOptions).
const quiet = { "intra_op.allow_spinning": "0", "inter_op.allow_spinning": "0" };
const raw = await ort.InferenceSession.create(model.bytes, {
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  extra: { session: quiet },
});

const runtime = new Runtime();
const session = await runtime.compile(g, { outputs: { c } });
const keptSession = await runtime.compile(g, { outputs: { c } });
const fill = (seed) => Float32Array.from({ length: N * N }, (_, i) => Math.sin(i * 0.001 + seed));
const av = fill(1);
const bv = fill(2);
await keptSession.keep({ b: bv });
const tensors = () => ({
  a: new ort.Tensor("float32", av, [N, N]),
  b: new ort.Tensor("float32", bv, [N, N]),
});

// Results are checked once: every variant must give the raw result.
const ref = (await raw.run(tensors())).c.data;
const same = (x) => x.length === ref.length && x.every((v, i) => v === ref[i]);
const check = {
  copy: same((await session.run({ a: av, b: bv })).c),
  kept: same((await keptSession.run({ a: av })).c),
  moved: same((await session.run({ a: av.slice(), b: bv.slice() }, { transfer: true })).c),
};

// Moving gives the arrays away, so each call gets its own, made before its timed region.
const fresh = () => ({ a: av.slice(), b: bv.slice() });
const variants = {
  raw: () => raw.run(tensors()),
  copy: () => session.run({ a: av, b: bv }),
  kept: () => keptSession.run({ a: av }),
  moved: (feeds) => session.run(feeds, { transfer: true }),
};
const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const key of rotate(Object.keys(variants), round)) {
    await variants[key](fresh());
    for (let i = 0; i < PER_ROUND; i++) {
      const feeds = key === "moved" ? fresh() : undefined;
      const t = now();
      await variants[key](feeds);
      times[key].push(now() - t);
    }
  }
}
await Promise.all([session.dispose(), keptSession.dispose()]);
await runtime.close();
await raw.release();

const ms = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
const gflops = (t) => Number(((2 * N ** 3) / (t * 1e6)).toFixed(1));
const ratio = (k) => Number((ms.raw / ms[k]).toFixed(3));
report("session-matmul", {
  n: N,
  rounds: ROUNDS,
  runs_per_variant: times.raw.length,
  median_ms: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, Number(v.toFixed(2))])),
  gflops: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, gflops(v)])),
  same_result_as_raw: check,
  ratios: {
    copy_vs_raw: ratio("copy"),
    kept_vs_raw: ratio("kept"),
    moved_vs_raw: ratio("moved"),
  },
  target: "copy_vs_raw ≥ 0.9",
  ok: ratio("copy") >= 0.9 && Object.values(check).every(Boolean),
});
