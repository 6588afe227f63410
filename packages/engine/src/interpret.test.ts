import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Graph } from "./graph.js";
import { erfValue, evaluate, InterpretError } from "./interpret.js";
import {
  abs,
  add,
  cast,
  concat,
  conv2d,
  convTranspose2d,
  cos,
  div,
  equal,
  erf,
  exp,
  expand,
  gather,
  greater,
  less,
  log,
  matmul,
  maximum,
  minimum,
  mul,
  neg,
  pow,
  reciprocal,
  reduceMax,
  reduceMean,
  reduceSum,
  relu,
  reshape,
  sigmoid,
  sin,
  slice,
  softmax,
  sqrt,
  stopGradient,
  sub,
  tanh,
  transpose,
  where,
} from "./ops.js";

const arange = (n: number, from = 0) => Array.from({ length: n }, (_, i) => i + from);
const close = (got: ArrayLike<number>, want: readonly number[], tol = 1e-14) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => {
    expect(Math.abs(got[i]! - w)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w)));
  });
};

describe("evaluate: elementwise", () => {
  it("broadcasts binary ops numpy-style ([2,1,3] with [4,1] gives [2,4,3])", () => {
    const g = new Graph();
    const a = g.input("a", "float32", [2, 1, 3]);
    const b = g.input("b", "float32", [4, 1]);
    const av = arange(6, 1);
    const bv = [10, 20, 30, 40];
    const ops = [add(a, b), sub(a, b), mul(a, b), div(a, b), maximum(a, 25), minimum(a, b)];
    const got = evaluate(g, { a: av, b: bv }, ops);
    const want = (f: (x: number, y: number) => number) => {
      const out: number[] = [];
      for (let i = 0; i < 2; i++)
        for (let j = 0; j < 4; j++) for (let k = 0; k < 3; k++) out.push(f(av[i * 3 + k]!, bv[j]!));
      return out;
    };
    close(
      got[0]!,
      want((x, y) => x + y),
    );
    close(
      got[1]!,
      want((x, y) => x - y),
    );
    close(
      got[2]!,
      want((x, y) => x * y),
    );
    close(
      got[3]!,
      want((x, y) => x / y),
    );
    close(
      got[4]!,
      av.map(() => 25),
    );
    close(
      got[5]!,
      want((x) => x),
    );
  });

  it("computes pow, comparisons and where with a broadcast condition", () => {
    const g = new Graph();
    const a = g.input("a", "float32", [2, 2]);
    const b = g.input("b", "float32", [2]);
    const got = evaluate(g, { a: [1, 2, 3, 4], b: [2, 3] }, [
      pow(a, b),
      cast(greater(a, b), "float32"),
      cast(less(a, b), "float32"),
      cast(equal(a, b), "float32"),
      where(greater(b, 2.5), a, neg(a)),
    ]);
    close(got[0]!, [1, 8, 9, 64]);
    close(got[1]!, [0, 0, 1, 1]);
    close(got[2]!, [1, 1, 0, 0]);
    close(got[3]!, [0, 0, 0, 0]);
    close(got[4]!, [-1, 2, -3, 4]);
  });

  it("computes every unary op", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [3]);
    const fs = [neg, exp, log, sqrt, reciprocal, tanh, sigmoid, abs, sin, cos, relu, stopGradient];
    const got = evaluate(g, { x: [0.7, 0.3, 1.9] }, [...fs.map((f) => f(x)), relu(neg(x)), abs(neg(x))]);
    const p = [0.7, 0.3, 1.9];
    close(
      got[0]!,
      p.map((t) => -t),
    );
    close(got[1]!, p.map(Math.exp));
    close(got[2]!, p.map(Math.log));
    close(got[3]!, p.map(Math.sqrt));
    close(
      got[4]!,
      p.map((t) => 1 / t),
    );
    close(got[5]!, p.map(Math.tanh));
    close(
      got[6]!,
      p.map((t) => 1 / (1 + Math.exp(-t))),
    );
    close(got[7]!, p);
    close(got[8]!, p.map(Math.sin));
    close(got[9]!, p.map(Math.cos));
    close(got[10]!, p);
    close(got[11]!, p);
    close(got[12]!, [0, 0, 0]);
    close(got[13]!, p);
  });

  it("computes erf to ~1e-15 against tabulated values", () => {
    // Abramowitz & Stegun / DLMF tabulated values.
    const table: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [1.5, 0.9661051464753108],
      [2, 0.9953222650189527],
      [2.9, 0.9999589021219005],
      [3, 0.9999779095030014],
      [3.5, 0.9999992569016276],
      [5, 0.9999999999984626],
      [10, 1],
    ];
    for (const [x, want] of table) {
      expect(Math.abs(erfValue(x) - want)).toBeLessThan(2e-15);
      expect(Math.abs(erfValue(-x) + want)).toBeLessThan(2e-15);
    }
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    close(evaluate(g, { x: [1, -2] }, [erf(x)])[0]!, [0.8427007929497149, -0.9953222650189527], 1e-15);
  });

  it("casts float to int by truncation, to bool by non-zero, bool to float as 0/1", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [5]);
    const got = evaluate(g, { x: [-2.7, -0.5, 0, 0.5, 3.9] }, [
      cast(x, "int64"),
      cast(x, "int32"),
      cast(cast(x, "bool"), "float32"),
      cast(x, "float64"),
    ]);
    close(got[0]!, [-2, -0, 0, 0, 3]);
    close(got[1]!, [-2, 0, 0, 0, 3]);
    close(got[2]!, [1, 1, 0, 1, 1]);
    close(got[3]!, [-2.7, -0.5, 0, 0.5, 3.9]);
  });

  it("truncates integer division toward zero", () => {
    const g = new Graph();
    const a = g.input("a", "int64", [3]);
    const got = evaluate(g, { a: BigInt64Array.from([7n, -7n, 6n]) }, [div(a, g.constant(2, [], "int64"))]);
    close(got[0]!, [3, -3, 3]);
  });
});

describe("evaluate: layout and reductions", () => {
  it("multiplies with broadcast batch dims ([2,1,2,3] @ [3,3,2])", () => {
    const g = new Graph();
    const a = g.input("a", "float32", [2, 1, 2, 3]);
    const b = g.input("b", "float32", [3, 3, 2]);
    const av = arange(12).map((v) => v * 0.5 - 2);
    const bv = arange(18).map((v) => (v % 5) - 1.5);
    const [y] = evaluate(g, { a: av, b: bv }, [matmul(a, b)]);
    const want: number[] = [];
    for (let p = 0; p < 2; p++)
      for (let q = 0; q < 3; q++)
        for (let i = 0; i < 2; i++)
          for (let j = 0; j < 2; j++) {
            let s = 0;
            for (let l = 0; l < 3; l++) s += av[p * 6 + i * 3 + l]! * bv[q * 6 + l * 2 + j]!;
            want.push(s);
          }
    close(y!, want);
  });

  it("transposes, reshapes and concatenates", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 4]);
    const xv = arange(24);
    const [t, r, c] = evaluate(g, { x: xv }, [
      transpose(x, [2, 0, 1]),
      reshape(x, [4, -1]),
      concat([x, slice(x, [0], [2], [1])], 1),
    ]);
    const want: number[] = [];
    for (let k = 0; k < 4; k++)
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) want.push(i * 12 + j * 4 + k);
    close(t!, want);
    close(r!, xv);
    const wc: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 5; j++) for (let k = 0; k < 4; k++) wc.push(i * 12 + (j < 3 ? j : j - 3) * 4 + k);
    close(c!, wc);
  });

  it("slices with negative bounds, clamping and steps", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [10]);
    const m = g.input("m", "float32", [3, 4]);
    const [a, b, c] = evaluate(g, { x: arange(10), m: arange(12) }, [
      slice(x, [1], [-2], [0], [3]),
      slice(x, [-3], [100]),
      slice(m, [1, 0], [3, 4], [0, 1], [1, 2]),
    ]);
    close(a!, [1, 4, 7]);
    close(b!, [7, 8, 9]);
    close(c!, [4, 6, 8, 10]);
  });

  it("follows ONNX clamping for negative Slice steps (hand-built node)", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [5]);
    const c = (v: number[]) => g.constant(v, [v.length], "int64");
    const [y] = g.addNode("Slice", [x, c([100]), c([-100]), c([0]), c([-2])], {}, [
      { shape: [3], dtype: "float32" },
    ]);
    close(evaluate(g, { x: arange(5) }, [y!])[0]!, [4, 2, 0]);
  });

  it("gathers along an axis with negative indices and index shape", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [3, 4]);
    const idx = g.constant([2, -1, 0, 0], [2, 2], "int64");
    const [r0, r1] = evaluate(g, { x: arange(12) }, [gather(x, idx, 0), gather(x, idx, 1)]);
    expect(gather(x, idx, 1).shape).toEqual([3, 2, 2]);
    close(r0!, [8, 9, 10, 11, 8, 9, 10, 11, 0, 1, 2, 3, 0, 1, 2, 3]);
    close(r1!, [2, 3, 0, 0, 6, 7, 4, 4, 10, 11, 8, 8]);
  });

  it("expands and reduces over chosen axes", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3]);
    const xv = [1, -5, 3, 4, 2, 9];
    const [e, s0, s1k, m, mx, all] = evaluate(g, { x: xv }, [
      expand(reshape(x, [2, 1, 3]), [2, 2, 3]),
      reduceSum(x, [0]),
      reduceSum(x, [-1], true),
      reduceMean(x, [1]),
      reduceMax(x, [0]),
      reduceSum(x),
    ]);
    close(e!, [1, -5, 3, 1, -5, 3, 4, 2, 9, 4, 2, 9]);
    close(s0!, [5, -3, 12]);
    close(s1k!, [-1, 15]);
    close(m!, [-1 / 3, 5]);
    close(mx!, [4, 2, 9]);
    close(all!, [14]);
  });

  it("computes softmax along a middle axis", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 2]);
    const xv = [1, 2, 3, 4, 5, 1000, -1, 0, 2, 2, 0.5, -3];
    const [y] = evaluate(g, { x: xv }, [softmax(x, 1)]);
    const want = new Array<number>(12);
    for (let i = 0; i < 2; i++)
      for (let k = 0; k < 2; k++) {
        const vals = [0, 1, 2].map((j) => xv[i * 6 + j * 2 + k]!);
        const m = Math.max(...vals);
        const z = vals.reduce((s, v) => s + Math.exp(v - m), 0);
        for (const j of [0, 1, 2]) want[i * 6 + j * 2 + k] = Math.exp(vals[j]! - m) / z;
      }
    close(y!, want);
  });
});

describe("evaluate: convolutions", () => {
  /** Truth by definition: zero-pad the input explicitly, then slide the dilated kernel. */
  function naiveConv(
    x: number[],
    [n, c, h, w]: number[],
    k: number[],
    [o, cg, kh, kw]: number[],
    bias: number[],
    { s = [1, 1], p = [0, 0, 0, 0], d = [1, 1], groups = 1 },
  ) {
    const hp = h + p[0]! + p[2]!;
    const wp = w + p[1]! + p[3]!;
    const padded = (b: number, ch: number, i: number, j: number) => {
      const ii = i - p[0]!;
      const jj = j - p[1]!;
      return ii < 0 || jj < 0 || ii >= h || jj >= w ? 0 : x[((b * c + ch) * h + ii) * w + jj]!;
    };
    const oh = Math.floor((hp - d[0]! * (kh - 1) - 1) / s[0]!) + 1;
    const ow = Math.floor((wp - d[1]! * (kw - 1) - 1) / s[1]!) + 1;
    const out: number[] = [];
    for (let b = 0; b < n; b++)
      for (let oc = 0; oc < o; oc++) {
        const grp = Math.floor(oc / (o / groups));
        for (let i = 0; i < oh; i++)
          for (let j = 0; j < ow; j++) {
            let acc = bias[oc]!;
            for (let ci = 0; ci < cg; ci++)
              for (let a = 0; a < kh; a++)
                for (let e = 0; e < kw; e++)
                  acc +=
                    k[((oc * cg + ci) * kh + a) * kw + e]! *
                    padded(b, grp * cg + ci, i * s[0]! + a * d[0]!, j * s[1]! + e * d[1]!);
            out.push(acc);
          }
      }
    return out;
  }

  it("Conv with stride, asymmetric padding, dilation, groups and bias", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 4, 5, 6]);
    const w = g.input("w", "float32", [6, 2, 3, 2]);
    const b = g.input("b", "float32", [6]);
    const xv = arange(240).map((v) => Math.sin(v));
    const wv = arange(72).map((v) => Math.cos(v * 0.3));
    const bv = arange(6).map((v) => v - 2);
    const opts = {
      stride: [2, 1] as const,
      padding: [1, 0, 2, 1] as const,
      dilation: [1, 2] as const,
      groups: 2,
    };
    const y = conv2d(x, w, b, opts);
    const want = naiveConv(xv, [2, 4, 5, 6], wv, [6, 2, 3, 2], bv, {
      s: [2, 1],
      p: [1, 0, 2, 1],
      d: [1, 2],
      groups: 2,
    });
    expect(y.size).toBe(want.length);
    close(evaluate(g, { x: xv, w: wv, b: bv }, [y])[0]!, want, 1e-13);
  });

  it("ConvTranspose scatters each input pixel through the kernel", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [1, 1, 2, 2]);
    const w = g.input("w", "float32", [1, 1, 2, 2]);
    const xv = [1, 2, 3, 4];
    const wv = [1, 10, 100, 1000];
    const [s2, s1, cropped] = evaluate(g, { x: xv, w: wv }, [
      convTranspose2d(x, w, undefined, { stride: 2 }),
      convTranspose2d(x, w),
      convTranspose2d(x, w, undefined, { padding: [1, 1, 0, 0] }),
    ]);
    // stride 2: each input pixel becomes its own 2×2 block x·w.
    close(s2!, [1, 10, 2, 20, 100, 1000, 200, 2000, 3, 30, 4, 40, 300, 3000, 400, 4000]);
    // stride 1: overlapping blocks add up.
    close(s1!, [1, 12, 20, 103, 1234, 2040, 300, 3400, 4000]);
    // pads crop the full output from the begin side.
    close(cropped!, [1234, 2040, 3400, 4000]);
  });

  it("ConvTranspose with groups and bias keeps channels apart", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [1, 2, 1, 1]);
    const w = g.input("w", "float32", [2, 1, 1, 2]);
    const b = g.input("b", "float32", [2]);
    const [y] = evaluate(g, { x: [2, 3], w: [1, 2, 3, 4], b: [0.5, -1] }, [
      convTranspose2d(x, w, b, { groups: 2 }),
    ]);
    close(y!, [2.5, 4.5, 8, 11]);
  });
});

describe("evaluate: leaves and errors", () => {
  it("reads inline and external initializers (float32, float16, bfloat16)", () => {
    const dir = mkdtempSync(join(tmpdir(), "interp-"));
    try {
      const file = join(dir, "w.bin");
      const buf = Buffer.alloc(3 + 12 + 4 + 4);
      [1.5, -2, 0.25].forEach((v, i) => {
        buf.writeFloatLE(v, 3 + 4 * i);
      });
      buf.writeUInt16LE(0x3c00, 15); // f16 1.0
      buf.writeUInt16LE(0xc100, 17); // f16 -2.5
      buf.writeUInt16LE(0x3fc0, 19); // bf16 1.5
      buf.writeUInt16LE(0xc040, 21); // bf16 -3
      writeFileSync(file, buf);
      const g = new Graph();
      const w = g.initializer("w", "float32", [3], { path: file, offset: 3, length: 12 });
      const h = g.initializer("h", "float16", [2], { path: file, offset: 15, length: 4 });
      const b = g.initializer("b", "bfloat16", [2], { path: file, offset: 19, length: 4 });
      const i = g.initializer("i", "float32", [2], Float32Array.from([7, 8]));
      const got = evaluate(g, {}, [w, h, b, add(i, 1)]);
      close(got[0]!, [1.5, -2, 0.25]);
      close(got[1]!, [1, -2.5]);
      close(got[2]!, [1.5, -3]);
      close(got[3]!, [8, 9]);
      const bad = g.initializer("bad", "float32", [3], { path: file, offset: 20, length: 12 });
      expect(() => evaluate(g, {}, [bad])).toThrow(/truncated or the offset is wrong/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names missing and mis-sized feeds and unsupported ops", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 2]);
    const y = exp(x);
    expect(() => evaluate(g, {}, [y])).toThrow(InterpretError);
    expect(() => evaluate(g, {}, [y])).toThrow(/no feed for input "x"/);
    expect(() => evaluate(g, { x: [1, 2, 3] }, [y])).toThrow(/has 3 values but its shape \[2,2\] needs 4/);
    const [z] = g.scope("blk", () => g.addNode("Frobnicate", [x], {}, [{ shape: [2, 2], dtype: "float32" }]));
    expect(() => evaluate(g, { x: [1, 2, 3, 4] }, [z!])).toThrow(
      /Frobnicate#\d+ at "blk": op Frobnicate is not/,
    );
  });

  it("runs only the nodes the outputs need", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [1]);
    const unused = g.input("u", "float32", [1]);
    exp(unused);
    expect(evaluate(g, { x: [2] }, [mul(x, x)])[0]![0]).toBe(4);
  });
});
