// (a) Per-call overhead of Session.run (worker round trip, feed checks, copies) over a raw onnxruntime
// session.run of the same tiny graph in the main thread, with the same session options (no spinning).
// Target: < 100 µs. Tracked ratio: raw / engine time per call (higher is better).
import ort from "onnxruntime-node";
import { loadEngine, median, report, timeMany } from "./perf-util.mjs";

const { Graph, ops, lower, Runtime } = await loadEngine();
const N = Number(process.env.PERF_N ?? 2000);

const g = new Graph("tiny");
const x = g.input("x", "float32", [1]);
const y = ops.add(x, 1);
const model = lower(g, { outputs: { y } });

const raw = await ort.InferenceSession.create(model.bytes, {
  executionProviders: ["cpu"],
  extra: { session: { "intra_op.allow_spinning": "0", "inter_op.allow_spinning": "0" } },
});
const feed = new Float32Array([1]);
const runtime = new Runtime();
const session = await runtime.compile(g, { outputs: { y } });

const rawTimes = [];
const engineTimes = [];
// Interleave blocks so background load hits both alike.
for (let block = 0; block < 10; block++) {
  rawTimes.push(...(await timeMany(() => raw.run({ x: new ort.Tensor("float32", feed, [1]) }), N / 10, 20)));
  engineTimes.push(...(await timeMany(() => session.run({ x: feed }), N / 10, 20)));
}
const rawUs = median(rawTimes) * 1000;
const engineUs = median(engineTimes) * 1000;
await session.dispose();
await runtime.close();
await raw.release();
report("runtime-overhead", {
  calls: N,
  raw_run_us: Number(rawUs.toFixed(1)),
  engine_run_us: Number(engineUs.toFixed(1)),
  overhead_us: Number((engineUs - rawUs).toFixed(1)),
  ratio: Number((engineUs / rawUs).toFixed(2)),
  ratios: { raw_vs_engine_per_call: Number((rawUs / engineUs).toFixed(3)) },
  target_overhead_us: 100,
  ok: engineUs - rawUs < 100,
});
