import { afterAll, describe, expect, it } from "vitest";
import { grad } from "./autodiff.js";
import { Graph, type Tensor } from "./graph.js";
import { evaluate } from "./interpret.js";
import * as nn from "./nn.js";
import * as o from "./ops.js";
import { compile, Runtime } from "./runtime.js";
import { rng } from "./test-gradcheck.js";

/**
 * Gradient graphs lowered to ONNX and run by onnxruntime in float32 agree with the float64 interpreter:
 * for every gradient tensor, max |ort − interp| ≤ 1e-5 · max |interp| (measured ≤ 6e-7; float32 accumulates ~1e-7
 * per op, and a wrong rule is off by O(1)).
 */
const rt = new Runtime({ workers: 1 });
afterAll(async () => {
  await rt.close();
});

async function crossCheck(
  specs: Record<string, number[]>,
  build: (x: Record<string, Tensor>, g: Graph) => Tensor,
  seed = 3,
) {
  const r = rng(seed);
  const g = new Graph("ortcheck");
  const x: Record<string, Tensor> = {};
  const feeds: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(specs)) {
    x[name] = g.input(name, "float32", shape);
    feeds[name] = Float32Array.from({ length: x[name].size }, () => 2 * r() - 1);
  }
  const loss = build(x, g);
  const names = Object.keys(specs);
  const grads = grad(
    loss,
    names.map((k) => x[k]!),
  );
  const outputs: Record<string, Tensor> = { loss };
  names.forEach((k, i) => {
    outputs[`d_${k}`] = grads[i]!;
  });
  const session = await compile(g, { outputs, runtime: rt });
  try {
    const got = await session.run(feeds);
    const want = evaluate(g, feeds, [loss, ...grads]);
    ["loss", ...names.map((k) => `d_${k}`)].forEach((key, i) => {
      const a = got[key] as Float32Array;
      const b = want[i]!;
      let scale = 0;
      let diff = 0;
      for (let j = 0; j < b.length; j++) {
        scale = Math.max(scale, Math.abs(b[j]!));
        diff = Math.max(diff, Math.abs(a[j]! - b[j]!));
      }
      expect(scale, `${key} is all zeros`).toBeGreaterThan(0);
      expect(diff / scale, key).toBeLessThanOrEqual(1e-5);
    });
  } finally {
    await session.dispose();
  }
}

describe("gradient graphs through onnxruntime (float32) vs the interpreter (float64)", () => {
  it("a pre-LN transformer block: layer norm, attention, exact GELU, residuals", async () => {
    const [L, D, H, F] = [6, 8, 2, 16];
    await crossCheck(
      { x: [1, L, D], wq: [D, D], wk: [D, D], wv: [D, D], wo: [D, D], w1: [F, D], w2: [D, F], ln: [D] },
      ({ x, wq, wk, wv, wo, w1, w2, ln }) => {
        const heads = (t: Tensor) => o.transpose(o.reshape(t, [1, L, H, D / H]), [0, 2, 1, 3]);
        const h = nn.layerNorm(x!, { weight: ln! });
        const att = nn.scaledDotProductAttention(
          heads(nn.linear(h, wq!)),
          heads(nn.linear(h, wk!)),
          heads(nn.linear(h, wv!)),
        );
        const merged = o.reshape(o.transpose(att, [0, 2, 1, 3]), [1, L, D]);
        const x1 = o.add(x!, nn.linear(merged, wo!));
        const y = o.add(x1, nn.linear(nn.gelu(nn.linear(nn.layerNorm(x1), w1!)), w2!));
        return o.reduceMean(o.mul(y, y));
      },
    );
  });

  it("convolutions, group norm, SiLU and nearest upsampling (a VAE decoder step)", async () => {
    await crossCheck({ x: [1, 4, 5, 5], w: [4, 4, 3, 3], b: [4], wt: [4, 2, 4, 4] }, ({ x, w, b, wt }) => {
      const h = nn.silu(nn.groupNorm(o.conv2d(x!, w!, b!, { padding: 1 }), 2));
      const up = o.convTranspose2d(nn.upsampleNearest(h), wt!, undefined, { stride: 2, padding: 1 });
      return o.reduceSum(o.mul(up, up));
    });
  });

  it("gather, strided slice, reduce-max, where, maximum and softmax", async () => {
    await crossCheck({ e: [7, 5], s: [5] }, ({ e, s }, g) => {
      const tok = o.gather(e!, g.constant([3, 1, 3, 6, 0], [5], "int64"), 0);
      const picked = o.slice(tok, [1], [5], [1], [2]);
      const m = o.reduceMax(picked, [0], true);
      const gated = o.where(o.greater(s!, 0), o.softmax(o.mul(tok, s!)), o.maximum(tok, 0.1));
      return o.add(o.reduceSum(o.mul(gated, gated)), o.reduceSum(o.exp(m)));
    });
  });

  it("Pad (ONNX order, a non-zero fill) and slices on several axes, whose gradients are Pads", async () => {
    await crossCheck({ x: [3, 10, 4] }, ({ x }) => {
      const padded = o.pad(x!, [1, 0, 2, 0, 3, 1], 0.25);
      const cut = o.slice(padded, [0, 2, 1], [3, 11, 6], [0, 1, 2], [1, 2, 1]);
      return o.reduceSum(o.mul(cut, o.tanh(cut)));
    });
  });

  it("a recompute-marked stack gives the same gradients through onnxruntime", async () => {
    await crossCheck({ x: [4, 6], w: [6, 6] }, ({ x, w }, g) => {
      let h = x!;
      for (let i = 0; i < 3; i++) {
        const hin = h;
        h = g.recompute(() => o.add(hin, o.tanh(o.matmul(nn.layerNorm(hin), w!))));
      }
      return o.reduceMean(o.mul(h, h));
    });
  });
});
