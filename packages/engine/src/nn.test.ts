import { afterAll, describe, expect, test } from "vitest";
import { Graph, GraphError, type Tensor } from "./graph.js";
import { erfValue, evaluate } from "./interpret.js";
import * as nn from "./nn.js";
import * as ops from "./ops.js";
import { Runtime } from "./runtime.js";

/**
 * Every composite is run through onnxruntime and compared with a direct plain-TypeScript formula (written
 * independently of the composition), and with the reference interpreter where it supports the ops.
 */

const rt = new Runtime();
afterAll(() => rt.close());

let seed = 1;
function rand(n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => {
    seed = (seed * 16807) % 2147483647;
    return ((seed / 2147483647) * 2 - 1) * scale;
  });
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** Runs `y` on onnxruntime, checks it against `expected` and (unless told not to) the interpreter. */
async function check(
  g: Graph,
  y: Tensor,
  feeds: Record<string, Float32Array>,
  expected: ArrayLike<number>,
  tol = 1e-5,
  interpret = true,
) {
  expect(y.size).toBe(expected.length);
  const s = await rt.compile(g, { outputs: { y } });
  const out = (await s.run(feeds)).y as Float32Array;
  await s.dispose();
  expect(maxDiff(out, expected)).toBeLessThanOrEqual(tol);
  if (interpret) {
    const [ref] = evaluate(g, feeds, [y]);
    expect(maxDiff(ref!, expected)).toBeLessThanOrEqual(tol);
  }
}

/** Row-major matmul of a [m,k] by b [k,n]. */
function mm(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
      out[i * n + j] = s;
    }
  return out;
}

function transposed(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j]!;
  return out;
}

/** Applies `f` to each row of length `n`. */
function rows(x: ArrayLike<number>, n: number, f: (row: number[]) => number[]): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    const row = Array.from({ length: n }, (_, i) => x[r * n + i]!);
    f(row).forEach((v, i) => {
      out[r * n + i] = v;
    });
  }
  return out;
}

describe("linear and LoRA", () => {
  test("linear with a PyTorch-layout weight and bias, rank-3 and rank-1 inputs", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 4]);
    const w = g.initializer("w", "float32", [5, 4], rand(20));
    const b = g.initializer("b", "float32", [5], rand(5));
    const xv = rand(24);
    const wv = (w.source as { data: Float32Array }).data;
    const bv = (b.source as { data: Float32Array }).data;
    const ref = mm(xv, transposed(wv, 5, 4), 6, 4, 5).map((v, i) => v + bv[i % 5]!);
    await check(g, nn.linear(x, w, b), { x: xv }, ref);

    const g1 = new Graph();
    const x1 = g1.input("x", "float32", [4]);
    const w1 = g1.initializer("w", "float32", [5, 4], wv);
    await check(
      g1,
      nn.linear(x1, w1),
      { x: xv.slice(0, 4) },
      mm(xv.slice(0, 4), transposed(wv, 5, 4), 1, 4, 5),
    );
  });

  test("bf16 weight is cast inside the graph", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [1, 2]);
    // bf16 bits of 1.5, -2, 0.25, 4 (exactly representable).
    const w = g.initializer("w", "bfloat16", [2, 2], Uint16Array.of(0x3fc0, 0xc000, 0x3e80, 0x4080));
    await check(
      g,
      nn.linear(x, w),
      { x: Float32Array.of(2, 3) },
      [1.5 * 2 - 2 * 3, 0.25 * 2 + 4 * 3],
      0,
      false,
    );
  });

  test("loraLinear = base + (alpha/r)·B·A·x with PEFT-named inputs", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [3, 6]);
    const wv = rand(4 * 6);
    const w = g.initializer("to_q.weight", "float32", [4, 6], wv);
    const lora = nn.loraInputs(g, "blocks.0.attn.to_q", { inFeatures: 6, outFeatures: 4, rank: 2, alpha: 8 });
    expect(lora.scale).toBe(4);
    expect(g.inputs.map((t) => (t.source as { name: string }).name)).toEqual([
      "x",
      "blocks.0.attn.to_q.lora_A.weight",
      "blocks.0.attn.to_q.lora_B.weight",
    ]);
    const y = nn.loraLinear(x, w, undefined, lora);
    const xv = rand(18);
    const av = rand(12);
    const bv = rand(8);
    const base = mm(xv, transposed(wv, 4, 6), 3, 6, 4);
    const delta = mm(mm(xv, transposed(av, 2, 6), 3, 6, 2), transposed(bv, 4, 2), 3, 2, 4);
    const feeds = { x: xv, "blocks.0.attn.to_q.lora_A.weight": av, "blocks.0.attn.to_q.lora_B.weight": bv };
    await check(
      g,
      y,
      feeds,
      base.map((v, i) => v + 4 * delta[i]!),
    );
    expect(() => nn.loraLinear(x, w, undefined, { ...lora, A: lora.B })).toThrow(GraphError);
  });
});

describe("activations and norms", () => {
  const xv = rand(2 * 3 * 8, 3);

  test("silu and gelu (erf and tanh)", async () => {
    for (const [name, f] of [
      ["silu", (v: number) => v / (1 + Math.exp(-v))],
      ["gelu", (v: number) => 0.5 * v * (1 + erfValue(v / Math.SQRT2))],
      ["tanh", (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))],
    ] as const) {
      const g = new Graph(name);
      const x = g.input("x", "float32", [2, 3, 8]);
      const y = name === "silu" ? nn.silu(x) : nn.gelu(x, name === "tanh" ? "tanh" : "none");
      await check(g, y, { x: xv }, Array.from(xv, f));
    }
  });

  test("layerNorm with and without affine", async () => {
    const w = rand(8);
    const b = rand(8);
    const ln = (row: number[], eps: number) => {
      const m = row.reduce((a, c) => a + c, 0) / row.length;
      const v = row.reduce((a, c) => a + (c - m) ** 2, 0) / row.length;
      return row.map((c) => (c - m) / Math.sqrt(v + eps));
    };
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 8]);
    await check(
      g,
      nn.layerNorm(x, { eps: 1e-6 }),
      { x: xv },
      rows(xv, 8, (r) => ln(r, 1e-6)),
      1e-5,
    );
    const g2 = new Graph();
    const x2 = g2.input("x", "float32", [2, 3, 8]);
    const y2 = nn.layerNorm(x2, {
      weight: g2.initializer("w", "float32", [8], w),
      bias: g2.initializer("b", "float32", [8], b),
    });
    await check(
      g2,
      y2,
      { x: xv },
      rows(xv, 8, (r) => ln(r, 1e-5).map((c, i) => c * w[i]! + b[i]!)),
      1e-5,
    );
  });

  test("rmsNorm with weight, in float32 for a float16 input", async () => {
    const w = rand(8);
    const rms = (row: number[]) => {
      const s = Math.sqrt(row.reduce((a, c) => a + c * c, 0) / row.length + 1e-6);
      return row.map((c, i) => (c / s) * w[i]!);
    };
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 8]);
    await check(
      g,
      nn.rmsNorm(x, { weight: g.initializer("w", "float32", [8], w) }),
      { x: xv },
      rows(xv, 8, rms),
    );
    const g16 = new Graph();
    const x16 = g16.input("x", "float16", [8]);
    const y16 = nn.rmsNorm(x16);
    expect(y16.dtype).toBe("float16");
    expect(y16.producer?.op).toBe("Cast");
  });

  test("groupNorm over NCHW with per-channel affine", async () => {
    const [n, c, h, w] = [2, 6, 3, 2];
    const groups = 3;
    const xs = rand(n * c * h * w, 2);
    const gamma = rand(c);
    const beta = rand(c);
    const per = (c / groups) * h * w;
    const ref = new Float64Array(xs.length);
    for (let s = 0; s < n * groups; s++) {
      const seg = Array.from(xs.subarray(s * per, (s + 1) * per));
      const m = seg.reduce((a, v) => a + v, 0) / per;
      const v = seg.reduce((a, q) => a + (q - m) ** 2, 0) / per;
      seg.forEach((q, i) => {
        const idx = s * per + i;
        const ch = Math.floor(idx / (h * w)) % c;
        ref[idx] = ((q - m) / Math.sqrt(v + 1e-6)) * gamma[ch]! + beta[ch]!;
      });
    }
    const g = new Graph();
    const x = g.input("x", "float32", [n, c, h, w]);
    const y = nn.groupNorm(x, groups, {
      weight: g.initializer("gamma", "float32", [c], gamma),
      bias: g.initializer("beta", "float32", [c], beta),
      eps: 1e-6,
    });
    await check(g, y, { x: xs }, ref, 1e-5);
    expect(() => nn.groupNorm(x, 4)).toThrow(/4 groups do not divide/);
  });
});

describe("attention and rotary embeddings", () => {
  test("scaled dot-product attention with an additive mask", async () => {
    const [b, hh, lq, lk, d] = [1, 2, 3, 4, 8];
    const qv = rand(b * hh * lq * d);
    const kv = rand(b * hh * lk * d);
    const vv = rand(b * hh * lk * d);
    const maskv = Float32Array.from({ length: lq * lk }, (_, i) => (i % lk === 3 ? -1e9 : 0));
    const ref: number[] = [];
    for (let head = 0; head < hh; head++)
      for (let i = 0; i < lq; i++) {
        const s = Array.from({ length: lk }, (_, j) => {
          let dot = 0;
          for (let p = 0; p < d; p++) dot += qv[(head * lq + i) * d + p]! * kv[(head * lk + j) * d + p]!;
          return dot / Math.sqrt(d) + maskv[i * lk + j]!;
        });
        const mx = Math.max(...s);
        const e = s.map((v) => Math.exp(v - mx));
        const z = e.reduce((a, v) => a + v, 0);
        for (let p = 0; p < d; p++) {
          ref.push(e.reduce((a, w, j) => a + (w / z) * vv[(head * lk + j) * d + p]!, 0));
        }
      }
    const g = new Graph();
    const q = g.input("q", "float32", [b, hh, lq, d]);
    const k = g.input("k", "float32", [b, hh, lk, d]);
    const v = g.input("v", "float32", [b, hh, lk, d]);
    const mask = g.input("mask", "float32", [lq, lk]);
    const y = nn.scaledDotProductAttention(q, k, v, { mask });
    await check(g, y, { q: qv, k: kv, v: vv, mask: maskv }, ref, 1e-5);
  });

  test("rotary: interleaved pairs (FLUX) and rotate-half, against the pairwise rotation formula", async () => {
    const [l, d] = [5, 8];
    const positions = [0, 1, 2, 7, 30];
    const xv = rand(2 * l * d);
    for (const interleaved of [true, false]) {
      const { cos, sin } = nn.rotaryTables(positions, d, { interleaved, theta: 10000 });
      const ref = new Float64Array(xv.length);
      for (let r = 0; r < 2 * l; r++) {
        const p = positions[r % l]!;
        for (let j = 0; j < d / 2; j++) {
          const angle = p * 10000 ** ((-2 * j) / d);
          const [a, b] = interleaved ? [2 * j, 2 * j + 1] : [j, j + d / 2];
          const xa = xv[r * d + a]!;
          const xb = xv[r * d + b]!;
          ref[r * d + a] = xa * Math.cos(angle) - xb * Math.sin(angle);
          ref[r * d + b] = xb * Math.cos(angle) + xa * Math.sin(angle);
        }
      }
      const g = new Graph();
      const x = g.input("x", "float32", [2, l, d]);
      const y = nn.applyRotary(x, g.constant(cos, [l, d]), g.constant(sin, [l, d]), interleaved);
      await check(g, y, { x: xv }, ref, 1e-5);
    }
  });
});

describe("shape helpers", () => {
  test("split, chunk, pad and nearest upsampling", async () => {
    const xv = Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i);
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 2]);
    const [a, b] = nn.split(x, [1, 2], 1) as [Tensor, Tensor];
    expect(b.shape).toEqual([2, 2, 2]);
    await check(g, a, { x: xv }, [0, 1, 6, 7], 0);
    const parts = nn.chunk(x, 2, -1);
    await check(g, parts[1]!, { x: xv }, [1, 3, 5, 7, 9, 11], 0);
    expect(() => nn.chunk(x, 2, 1)).toThrow(GraphError);

    const gp = new Graph();
    const xp = gp.input("x", "float32", [1, 1, 2, 2]);
    const padded = nn.pad(xp, [0, 0, 0, 0, 0, 0, 1, 1], -1);
    await check(gp, padded, { x: Float32Array.of(1, 2, 3, 4) }, [1, 2, -1, 3, 4, -1, -1, -1, -1], 0);

    const gu = new Graph();
    const xu = gu.input("x", "float32", [1, 2, 2, 2]);
    const up = nn.upsampleNearest(xu, 2);
    expect(up.shape).toEqual([1, 2, 4, 4]);
    const uv = Float32Array.from({ length: 8 }, (_, i) => i + 1);
    const ref: number[] = [];
    for (let c = 0; c < 2; c++)
      for (let y = 0; y < 4; y++)
        for (let xx = 0; xx < 4; xx++) ref.push(uv[c * 4 + Math.floor(y / 2) * 2 + Math.floor(xx / 2)]!);
    await check(gu, up, { x: uv }, ref, 0);
  });
});

/** Direct conv reference: NCHW, weight [O, C/groups, kh, kw]. */
function convRef(
  x: Float32Array,
  [n, c, h, w]: number[],
  wt: Float32Array,
  [o, cg, kh, kw]: number[],
  bias: Float32Array | undefined,
  { stride = 1, pads = [0, 0, 0, 0], dil = 1, groups = 1 },
) {
  const oh = Math.floor((h + pads[0]! + pads[2]! - dil * (kh - 1) - 1) / stride) + 1;
  const ow = Math.floor((w + pads[1]! + pads[3]! - dil * (kw - 1) - 1) / stride) + 1;
  const out = new Float64Array(n * o * oh * ow);
  const og = o / groups;
  for (let b = 0; b < n; b++)
    for (let oc = 0; oc < o; oc++)
      for (let y = 0; y < oh; y++)
        for (let xx = 0; xx < ow; xx++) {
          let s = bias ? bias[oc]! : 0;
          const grp = Math.floor(oc / og);
          for (let ic = 0; ic < cg; ic++)
            for (let i = 0; i < kh; i++)
              for (let j = 0; j < kw; j++) {
                const iy = y * stride - pads[0]! + i * dil;
                const ix = xx * stride - pads[1]! + j * dil;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                s +=
                  x[((b * c + grp * cg + ic) * h + iy) * w + ix]! * wt[((oc * cg + ic) * kh + i) * kw + j]!;
              }
          out[((b * o + oc) * oh + y) * ow + xx] = s;
        }
  return out;
}

describe("convolution primitives", () => {
  test("conv2d: padding, stride, dilation, groups, bias, and the VAE's asymmetric downsample pad", async () => {
    const cases = [
      { x: [2, 4, 5, 6], w: [6, 4, 3, 3], stride: 1, pads: [1, 1, 1, 1], dil: 1, groups: 1, bias: true },
      { x: [1, 4, 7, 7], w: [4, 2, 3, 3], stride: 2, pads: [0, 0, 0, 0], dil: 1, groups: 2, bias: false },
      { x: [1, 2, 7, 6], w: [3, 2, 3, 2], stride: 1, pads: [2, 1, 2, 1], dil: 2, groups: 1, bias: true },
      { x: [1, 3, 1, 1], w: [5, 3, 1, 1], stride: 1, pads: [0, 0, 0, 0], dil: 1, groups: 1, bias: true },
    ];
    for (const cs of cases) {
      const g = new Graph();
      const x = g.input("x", "float32", cs.x);
      const wv = rand(cs.w.reduce((a, b) => a * b, 1));
      const bv = cs.bias ? rand(cs.w[0]!) : undefined;
      const w = g.initializer("w", "float32", cs.w, wv);
      const b = bv && g.initializer("b", "float32", [cs.w[0]!], bv);
      const y = ops.conv2d(x, w, b, {
        stride: cs.stride,
        padding: cs.pads as [number, number, number, number],
        dilation: cs.dil,
        groups: cs.groups,
      });
      const xv = rand(cs.x.reduce((a, b) => a * b, 1));
      await check(g, y, { x: xv }, convRef(xv, cs.x, wv, cs.w, bv, cs), 1e-5, false);
    }
    // Downsample as in the FLUX VAE: pad right/bottom by 1, then a 3×3 stride-2 conv without padding.
    const g = new Graph();
    const x = g.input("x", "float32", [1, 2, 6, 6]);
    const wv = rand(2 * 2 * 9);
    const y = ops.conv2d(
      nn.pad(x, [0, 0, 0, 0, 0, 0, 1, 1]),
      g.initializer("w", "float32", [2, 2, 3, 3], wv),
      undefined,
      {
        stride: 2,
      },
    );
    expect(y.shape).toEqual([1, 2, 3, 3]);
    const xv = rand(72);
    await check(
      g,
      y,
      { x: xv },
      convRef(xv, [1, 2, 6, 6], wv, [2, 2, 3, 3], undefined, { stride: 2, pads: [0, 0, 1, 1] }),
      1e-5,
      false,
    );
    expect(() => ops.conv2d(x, g.initializer("bad", "float32", [2, 3, 3, 3], rand(54)))).toThrow(/disagree/);
  });

  test("convTranspose2d is the adjoint of conv2d: <conv(x), y> = <x, convT(y)>", async () => {
    for (const { stride, pads, groups } of [
      { stride: 1, pads: [1, 1, 1, 1], groups: 1 },
      { stride: 2, pads: [0, 0, 1, 1], groups: 2 },
    ]) {
      const xs = [1, 4, 7, 7];
      const ws = [4, 4 / groups, 3, 3];
      const wv = rand(ws.reduce((a, b) => a * b, 1));
      const xv = rand(xs.reduce((a, b) => a * b, 1));
      const cx = convRef(xv, xs, wv, ws, undefined, { stride, pads, groups });
      const g = new Graph();
      const oh = Math.sqrt(cx.length / 4);
      const yin = g.input("y", "float32", [1, 4, oh, oh]);
      const w = g.initializer("w", "float32", ws, wv);
      // Output padding recovers the input size lost to the stride's floor.
      const outPad = (xs[2]! + pads[0]! + pads[2]! - 3) % stride;
      const xt = ops.convTranspose2d(yin, w, undefined, {
        stride,
        padding: pads as [number, number, number, number],
        groups,
        outputPadding: outPad,
      });
      expect(xt.shape).toEqual(xs);
      const yv = rand(cx.length);
      const s = await rt.compile(g, { outputs: { xt } });
      const out = (await s.run({ y: yv })).xt!;
      await s.dispose();
      const lhs = cx.reduce((a, v, i) => a + v * yv[i]!, 0);
      const rhs = Array.from(out as Float32Array).reduce((a, v, i) => a + v * xv[i]!, 0);
      expect(Math.abs(lhs - rhs)).toBeLessThan(1e-4 * (1 + Math.abs(lhs)));
    }
  });
});
