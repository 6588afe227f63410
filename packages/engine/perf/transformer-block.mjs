// (c) FLOP rate of a pre-LN transformer block (seq 256, width 256, 4 heads, FFN 1024, GELU) built with nn
// and run through the engine, as a ratio to a plain onnxruntime MatMul of the same FLOP count in the same
// process. Forward+backward (engine `grad`) is measured too when autodiff is available, counting 3× the
// forward FLOPs.
import ort from "onnxruntime-node";
import { loadEngine, median, now, report } from "./perf-util.mjs";

const engine = await loadEngine();
const { Graph, nn, ops, Runtime } = engine;
const [L, D, H, F] = [256, 256, 4, 1024];
const REPS = Number(process.env.PERF_REPS ?? 20);

let seed = 7;
const rand = (n, scale) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 16807) % 2147483647;
    return ((seed / 2147483647) * 2 - 1) * scale;
  });

function block(g, x) {
  const p = (name, shape, scale) =>
    g.initializer(
      name,
      "float32",
      shape,
      rand(
        shape.reduce((a, b) => a * b, 1),
        scale,
      ),
    );
  const lin = (name, out, inF, h) =>
    nn.linear(h, p(`${name}.weight`, [out, inF], 1 / Math.sqrt(inF)), p(`${name}.bias`, [out], 0.02));
  const ln1 = nn.layerNorm(x, { weight: p("ln1.weight", [D], 1), bias: p("ln1.bias", [D], 0.1) });
  const heads = (t) => ops.transpose(ops.reshape(t, [1, L, H, D / H]), [0, 2, 1, 3]);
  const q = heads(lin("q", D, D, ln1));
  const k = heads(lin("k", D, D, ln1));
  const v = heads(lin("v", D, D, ln1));
  const a = ops.reshape(ops.transpose(nn.scaledDotProductAttention(q, k, v), [0, 2, 1, 3]), [1, L, D]);
  const h = ops.add(x, lin("o", D, D, a));
  const ln2 = nn.layerNorm(h, { weight: p("ln2.weight", [D], 1), bias: p("ln2.bias", [D], 0.1) });
  return ops.add(h, lin("fc2", D, F, nn.gelu(lin("fc1", F, D, ln2), "tanh")));
}

const flops = 2 * L * D * D * 4 + 2 * 2 * L * L * D + 2 * 2 * L * D * F;
const runtime = new Runtime();
const g = new Graph("block");
const x = g.input("x", "float32", [1, L, D]);
const y = block(g, x);
const fwd = await runtime.compile(g, { outputs: { y } });
const xv = rand(L * D, 1);

let bwd;
if (typeof engine.grad === "function") {
  const gb = new Graph("block_bwd");
  const xb = gb.input("x", "float32", [1, L, D]);
  const yb = block(gb, xb);
  const loss = ops.reduceSum(ops.mul(yb, yb));
  const weights = gb.initializers.filter((t) => t.rank === 2);
  const grads = engine.grad(loss, [xb, ...weights]);
  const outputs = { loss };
  grads.forEach((t, i) => {
    outputs[`g${i}`] = t;
  });
  bwd = await runtime.compile(gb, { outputs });
}

// Baseline: one square MatMul with the same FLOPs, raw onnxruntime in this thread. Its thread pool does
// not spin-wait after a run, like the engine's sessions: runs of the three sessions interleave, and a pool
// spinning after its run would take a core from the next session (on 2 cores that halves its speed, which
// made either side look slower than it is depending on who spun).
const N = Math.round(Math.cbrt(flops / 2));
const mg = new Graph("mm");
const ma = mg.input("a", "float32", [N, N]);
const mb = mg.input("b", "float32", [N, N]);
const raw = await ort.InferenceSession.create(
  engine.lower(mg, { outputs: { c: ops.matmul(ma, mb) } }).bytes,
  {
    extra: { session: { "intra_op.allow_spinning": "0", "inter_op.allow_spinning": "0" } },
  },
);
const av = rand(N * N, 1);
const bv = rand(N * N, 1);

const times = { fwd: [], bwd: [], mm: [] };
const one = async (key, fn) => {
  const t = now();
  await fn();
  times[key].push(now() - t);
};
for (let i = 0; i < 3; i++) {
  await fwd.run({ x: xv });
  await raw.run({ a: new ort.Tensor("float32", av, [N, N]), b: new ort.Tensor("float32", bv, [N, N]) });
  if (bwd) await bwd.run({ x: xv });
}
for (let i = 0; i < REPS; i++) {
  await one("fwd", () => fwd.run({ x: xv }));
  await one("mm", () =>
    raw.run({ a: new ort.Tensor("float32", av, [N, N]), b: new ort.Tensor("float32", bv, [N, N]) }),
  );
  if (bwd) await one("bwd", () => bwd.run({ x: xv }));
}
const gflops = (f, ms) => f / (ms * 1e6);
const mmRate = gflops(2 * N * N * N, median(times.mm));
const fwdRate = gflops(flops, median(times.fwd));
const result = {
  shape: { seq: L, width: D, heads: H, ffn: F },
  forward_mflop: Number((flops / 1e6).toFixed(1)),
  matmul_n: N,
  matmul_ms: Number(median(times.mm).toFixed(2)),
  matmul_gflops: Number(mmRate.toFixed(1)),
  forward_ms: Number(median(times.fwd).toFixed(2)),
  forward_gflops: Number(fwdRate.toFixed(1)),
  forward_ratio: Number((fwdRate / mmRate).toFixed(3)),
};
result.ratios = { forward_vs_matmul: result.forward_ratio };
if (bwd) {
  const bRate = gflops(3 * flops, median(times.bwd));
  Object.assign(result, {
    forward_backward_ms: Number(median(times.bwd).toFixed(2)),
    forward_backward_gflops: Number(bRate.toFixed(1)),
    forward_backward_ratio: Number((bRate / mmRate).toFixed(3)),
  });
  result.ratios.forward_backward_vs_matmul = result.forward_backward_ratio;
} else {
  result.forward_backward = "skipped: engine has no grad() yet";
}
await runtime.close();
await raw.release();
report("transformer-block", result);
