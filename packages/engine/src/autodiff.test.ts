import { describe, expect, it } from "vitest";
import { grad, RECOMPUTE_OF_ATTR } from "./autodiff.js";
import { Graph, GraphError, type Tensor } from "./graph.js";
import { evaluate } from "./interpret.js";
import { planMemory } from "./memory-plan.js";
import * as o from "./ops.js";
import { gradCheck, type InputSpec } from "./test-gradcheck.js";

const positive = (r: () => number) => 0.3 + 1.5 * r();
/** Values at least 0.2 away from 0, so Abs/Relu/comparisons are differentiable at every sample. */
const awayFromZero = (r: () => number) => (r() < 0.5 ? -1 : 1) * (0.2 + r());

function expectClose(
  specs: Record<string, InputSpec>,
  build: (x: Record<string, Tensor>, g: Graph) => Tensor,
) {
  const res = gradCheck(specs, build);
  expect(res.worst, res.worstAt).toBeLessThanOrEqual(1);
  expect(res.maxAbsNumeric).toBeGreaterThan(1e-3);
  return res;
}

describe("VJP rules vs central differences (float64 interpreter, rtol 1e-6)", () => {
  const bcast = { a: { shape: [2, 1, 3] }, b: { shape: [4, 1] } };
  it("Add, Sub, Mul with broadcasting and a scalar", () => {
    expectClose(bcast, ({ a, b }) => o.add(a!, b!));
    expectClose(bcast, ({ a, b }) => o.sub(a!, b!));
    expectClose(bcast, ({ a, b }) => o.mul(o.mul(a!, b!), 3));
    expectClose(bcast, ({ a, b }) => o.sub(2, o.mul(b!, a!)));
  });
  it("Div and Pow (both operands)", () => {
    const pos = { a: { shape: [2, 1, 3], draw: positive }, b: { shape: [4, 1], draw: positive } };
    expectClose(pos, ({ a, b }) => o.div(a!, b!));
    expectClose(pos, ({ a, b }) => o.div(b!, a!));
    expectClose(pos, ({ a, b }) => o.pow(a!, b!));
    expectClose({ a: { shape: [5], draw: awayFromZero } }, ({ a }) => o.pow(a!, 3));
    for (const k of [1, 2, 0.5, -1, 1.5, -2.5]) {
      expectClose({ a: { shape: [5], draw: positive } }, ({ a }) => o.pow(a!, k));
    }
  });
  it("Max and Min route the gradient to the winner", () => {
    expectClose(bcast, ({ a, b }) => o.maximum(a!, b!));
    expectClose(bcast, ({ a, b }) => o.minimum(a!, b!));
    expectClose({ a: { shape: [6], draw: awayFromZero } }, ({ a }) => o.maximum(a!, 0));
  });
  it("Max splits the gradient evenly on ties", () => {
    const g = new Graph();
    const a = g.input("a", "float32", [2]);
    const b = g.input("b", "float32", [2]);
    const [ga, gb] = grad(o.reduceSum(o.maximum(a, b)), [a, b]);
    const [va, vb] = evaluate(g, { a: [1, 2], b: [1, 3] }, [ga!, gb!]);
    expect(Array.from(va!)).toEqual([0.5, 0]);
    expect(Array.from(vb!)).toEqual([0.5, 1]);
  });
  const unaries: [string, (x: Tensor) => Tensor, InputSpec["draw"]?][] = [
    ["Neg", o.neg],
    ["Exp", o.exp],
    ["Log", o.log, positive],
    ["Sqrt", o.sqrt, positive],
    ["Reciprocal", o.reciprocal, positive],
    ["Tanh", o.tanh],
    ["Erf", o.erf],
    ["Sigmoid", o.sigmoid],
    ["Abs", o.abs, awayFromZero],
    ["Relu", o.relu, awayFromZero],
    ["Sin", o.sin],
    ["Cos", o.cos],
    ["Identity via cast to float64 and back", (x) => o.cast(o.cast(x, "float64"), "float32")],
  ];
  for (const [name, f, draw] of unaries) {
    it(`${name}`, () => {
      expectClose({ x: { shape: [3, 4], draw: draw ?? ((r) => 3 * r() - 1.5) } }, ({ x }) => f(x!));
    });
  }
  it("Where passes the gradient to the chosen branch; the condition gets none", () => {
    const res = expectClose(
      {
        c: { shape: [3, 1], draw: awayFromZero },
        a: { shape: [3, 4] },
        b: { shape: [4] },
      },
      ({ c, a, b }) => o.where(o.greater(c!, 0), a!, o.mul(b!, c!)),
    );
    // c still gets a gradient through Mul, never through the comparison.
    expect(res.analytic.length).toBe(3);
  });
  it("MatMul with a shared weight, broadcast batch dims and a batched right operand", () => {
    expectClose({ a: { shape: [2, 3, 4] }, w: { shape: [4, 5] } }, ({ a, w }) => o.matmul(a!, w!));
    expectClose({ a: { shape: [2, 1, 3, 4] }, b: { shape: [3, 4, 2] } }, ({ a, b }) => o.matmul(a!, b!));
    expectClose({ a: { shape: [3, 4] }, b: { shape: [2, 4, 5] } }, ({ a, b }) => o.matmul(a!, b!));
  });
  it("linear layers: x @ transpose(W) with W [out, in], as nn.linear builds them", () => {
    expectClose({ x: { shape: [2, 3, 4] }, w: { shape: [5, 4] } }, ({ x, w }) =>
      o.matmul(x!, o.transpose(w!, [1, 0])),
    );
    expectClose({ x: { shape: [3, 4] }, w: { shape: [2, 5, 4] } }, ({ x, w }) =>
      o.matmul(x!, o.transpose(w!, [0, 2, 1])),
    );
    // dx = g @ W and dW = g2ᵀ @ x2 directly: the only backward Transpose is g2ᵀ (fused into the GEMM by onnxruntime).
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 4]);
    const w = g.input("w", "float32", [5, 4]);
    const loss = o.reduceSum(o.matmul(x, o.transpose(w, [1, 0])));
    const before = g.nodes.length;
    const reached = new Set<number>();
    const stack = grad(loss, [x, w]);
    while (stack.length > 0) {
      const n = stack.pop()!.producer;
      if (!n || reached.has(n.id)) continue;
      reached.add(n.id);
      stack.push(...n.inputs);
    }
    const transposes = g.nodes.filter((n) => n.id >= before && reached.has(n.id) && n.op === "Transpose");
    expect(transposes.length).toBe(1);
  });
  it("Reshape, Transpose, Expand", () => {
    expectClose({ x: { shape: [2, 3, 4] } }, ({ x }) => o.reshape(x!, [4, -1]));
    expectClose({ x: { shape: [2, 3, 4] } }, ({ x }) => o.transpose(x!, [2, 0, 1]));
    expectClose({ x: { shape: [3, 1] } }, ({ x }) => o.expand(x!, [2, 3, 4]));
  });
  it("Concat of three tensors on a middle axis", () => {
    expectClose(
      { a: { shape: [2, 1, 3] }, b: { shape: [2, 2, 3] }, c: { shape: [2, 3, 3] } },
      ({ a, b, c }) => o.concat([a!, b!, c!], 1),
    );
  });
  it("Slice with negative starts, steps and several axes", () => {
    expectClose({ x: { shape: [4, 9] } }, ({ x }) => o.slice(x!, [-3, 1], [100, -1], [0, 1], [1, 3]));
    expectClose({ x: { shape: [10] } }, ({ x }) => o.slice(x!, [2], [10], [0], [4]));
    expectClose({ x: { shape: [3, 5] } }, ({ x }) => o.slice(x!, [1], [3], [1]));
  });
  it("Pad in constant mode, before and after on several axes (and a non-zero fill)", () => {
    expectClose({ x: { shape: [2, 3, 4] } }, ({ x }) => o.pad(x!, [0, 2, 1, 1, 0, 3]));
    expectClose({ x: { shape: [3, 2] } }, ({ x }) =>
      o.mul(o.pad(x!, [1, 0, 0, 2], 0.5), o.pad(x!, [0, 2, 1, 0])),
    );
    expectClose({ x: { shape: [4] } }, ({ x }) => o.pad(x!, [0, 0]));
  });
  it("Slice's gradient is padded at run time: no zero block exists as a constant to fold", () => {
    for (const [shape, build] of [
      [[6, 40, 8], (x: Tensor) => o.slice(x, [1, 10], [4, 30], [0, 1])],
      [[5, 9], (x: Tensor) => o.slice(x, [2], [9], [1], [3])],
    ] as const) {
      const g = new Graph();
      const x = g.input("x", "float32", shape);
      const y = build(x);
      // The upstream gradient is an input (a constant seed would itself fold into a constant of y's size).
      const seed = g.input("dy", "float32", y.shape);
      const forward = g.nodes.length;
      const [dx] = grad(y, [x], { seed });
      expect(g.nodes.slice(forward).some((n) => n.op === "Pad")).toBe(true);
      // A node reading only constants is folded by onnxruntime into a stored tensor; the slice VJP has none.
      const plan = planMemory(g, { dx: dx! });
      expect(plan.castWeightBytes, shape.join("x")).toBe(0);
    }
  });
  it("slices that tile an axis get one Concat as gradient, not a Pad per slice and an Add", () => {
    // RoPE's interleaved pairs: x [.., 4, 2] split into its two columns, recombined as (−odd, even).
    const rope = (x: Tensor) => {
      const even = o.slice(x, [0], [1], [-1]);
      const odd = o.slice(x, [1], [2], [-1]);
      return o.mul(o.concat([o.neg(odd), even], -1), x);
    };
    expectClose({ x: { shape: [3, 4, 2] } }, ({ x }) => rope(x!));
    // Three adjacent pieces that leave rows 0 and 7 out (one Pad remains, for the rows no slice reads),
    // and pieces that do not touch (the contributions are added as before).
    const pieces = (x: Tensor) =>
      o.concat([o.slice(x, [5], [7], [0]), o.slice(x, [1], [3], [0]), o.slice(x, [3], [5], [0])], 0);
    const apart = (x: Tensor) => o.add(o.slice(x, [0], [2], [0]), o.slice(x, [4], [6], [0]));
    expectClose({ x: { shape: [8, 3] } }, ({ x }) => o.mul(pieces(x!), pieces(x!)));
    expectClose({ x: { shape: [8, 3] } }, ({ x }) => apart(x!));
    const count = (build: (x: Tensor) => Tensor, shape: number[]) => {
      const g = new Graph();
      const x = g.input("x", "float32", shape);
      const y = build(x);
      const [dx] = grad(y, [x], { seed: g.input("dy", "float32", y.shape) });
      const ops = new Map<string, number>();
      const seen = new Set<number>();
      const walk = (t: Tensor) => {
        const p = t.producer;
        if (!p || seen.has(p.id)) return;
        seen.add(p.id);
        ops.set(p.op, (ops.get(p.op) ?? 0) + 1);
        p.inputs.forEach(walk);
      };
      walk(dx!);
      return (op: string) => ops.get(op) ?? 0;
    };
    const ropeOps = count(rope, [3, 4, 2]);
    expect([ropeOps("Pad"), ropeOps("Add")]).toEqual([0, 1]); // the Add: the gradient through the Mul's x
    const pieceOps = count((x) => pieces(x), [8, 3]);
    expect([pieceOps("Pad"), pieceOps("Add")]).toEqual([1, 0]);
    const apartOps = count(apart, [8, 3]);
    expect([apartOps("Pad"), apartOps("Add")]).toEqual([2, 1]);
  });
  it("gradients are not reshaped to the shape they have, nor twice in a row", () => {
    const reshapes = (build: (x: Tensor) => Tensor) => {
      const g = new Graph();
      const x = g.input("x", "float32", [2, 3, 4]);
      const y = build(x);
      const [dx] = grad(y, [x], { seed: g.input("dy", "float32", y.shape) });
      const seen = new Set<number>();
      let n = 0;
      const walk = (t: Tensor) => {
        const p = t.producer;
        if (!p || seen.has(p.id)) return;
        seen.add(p.id);
        if (p.op === "Reshape") n++;
        p.inputs.forEach(walk);
      };
      walk(dx!);
      return n;
    };
    // keepdims reductions: their gradient already has the kept shape.
    expect(reshapes((x) => o.reduceSum(o.mul(x, x), [2], true))).toBe(0);
    expect(reshapes((x) => o.reduceMean(x, [1, 2], true))).toBe(0);
    // Two Reshapes back to back: one Reshape of the gradient (the forward's own two are not on dx's path).
    expect(reshapes((x) => o.reshape(o.reshape(x, [6, 4]), [24]))).toBe(1);
    expectClose({ x: { shape: [2, 3, 4] } }, ({ x }) => o.reshape(o.reshape(x!, [6, 4]), [24]));
    expectClose({ x: { shape: [2, 3, 4] } }, ({ x }) => o.mul(o.reduceMean(x!, [1, 2], true), x!));
  });
  it("Gather with repeated and negative indices (gradients accumulate)", () => {
    const idx = (g: Graph) => g.constant([2, -1, 0, 2, 2, 1], [2, 3], "int64");
    expectClose({ x: { shape: [4, 3] } }, ({ x }, g) => o.gather(x!, idx(g), 0));
    expectClose({ x: { shape: [2, 4, 3] } }, ({ x }, g) => o.gather(x!, idx(g), 1));
    expectClose({ x: { shape: [2, 4] } }, ({ x }, g) => o.gather(x!, g.constant([3, 3, 0], [3], "int32"), 1));
  });
  it("ReduceSum, ReduceMean, ReduceMax over chosen axes, with and without keepdims", () => {
    const x = { x: { shape: [2, 3, 4] } };
    expectClose(x, ({ x }) => o.reduceSum(x!, [0, 2]));
    expectClose(x, ({ x }) => o.reduceSum(x!, [1], true));
    expectClose(x, ({ x }) => o.reduceMean(x!, [-1]));
    expectClose(x, ({ x }) => o.reduceMean(x!));
    expectClose(x, ({ x }) => o.reduceMax(x!, [1]));
    expectClose(x, ({ x }) => o.reduceMax(x!, [0, 2], true));
  });
  it("Gelu, exact and tanh-approximated", () => {
    for (const approximate of ["none", "tanh"] as const) {
      expectClose({ x: { shape: [3, 5], draw: (r) => 6 * r() - 3 } }, ({ x }) => o.gelu(x!, approximate));
    }
  });
  it("LayerNormalization: input, scale and bias, over one and over two trailing axes", () => {
    const draw = (r: () => number) => 4 * r() - 2;
    expectClose(
      { x: { shape: [3, 6], draw }, w: { shape: [6] }, b: { shape: [6] } },
      ({ x, w, b }) => o.layerNormalization(x!, w!, b!).y,
    );
    expectClose(
      { x: { shape: [2, 3, 4], draw }, w: { shape: [3, 4] } },
      ({ x, w }) => o.layerNormalization(x!, w!, undefined, { axis: 1, epsilon: 0.1 }).y,
    );
    // A literal all-ones scale (nn.layerNorm without a weight) takes the rule's shortcut.
    expectClose({ x: { shape: [3, 6], draw } }, ({ x }, g) => {
      return o.layerNormalization(x!, g.constant(new Float32Array(6).fill(1), [6])).y;
    });
  });
  it("LayerNormalization's mean and 1/σ outputs carry gradients too", () => {
    expectClose({ x: { shape: [3, 6], draw: (r) => 4 * r() - 2 }, w: { shape: [6] } }, ({ x, w }) => {
      const { y, mean, invStdDev } = o.layerNormalization(x!, w!);
      return o.add(o.mul(y, mean), invStdDev);
    });
    expectClose({ x: { shape: [3, 6], draw: (r) => 4 * r() - 2 }, w: { shape: [6] } }, ({ x, w }) => {
      const { mean, invStdDev } = o.layerNormalization(x!, w!);
      return o.mul(mean, invStdDev);
    });
  });
  it("Softmax on a middle axis", () => {
    expectClose({ x: { shape: [2, 3, 4] } }, ({ x }) => o.softmax(x!, 1));
    expectClose({ x: { shape: [2, 5] } }, ({ x }) => o.softmax(o.mul(x!, 3)));
  });
});

describe("composite functions through grad", () => {
  it("layer norm written from primitives", () => {
    expectClose({ x: { shape: [3, 6] }, w: { shape: [6] }, b: { shape: [6] } }, ({ x, w, b }) => {
      const mu = o.reduceMean(x!, [-1], true);
      const d = o.sub(x!, mu);
      const v = o.reduceMean(o.mul(d, d), [-1], true);
      return o.add(o.mul(o.div(d, o.sqrt(o.add(v, 1e-5))), w!), b!);
    });
  });
  it("RMS norm and tanh-GELU and SiLU", () => {
    expectClose({ x: { shape: [3, 6] }, w: { shape: [6] } }, ({ x, w }) =>
      o.mul(o.mul(x!, o.reciprocal(o.sqrt(o.add(o.reduceMean(o.mul(x!, x!), [-1], true), 1e-6)))), w!),
    );
    expectClose({ x: { shape: [3, 6] } }, ({ x }) =>
      o.div(x!, o.sqrt(o.add(o.reduceMean(o.pow(x!, 2), [-1], true), 1e-6))),
    );
    // A Div whose upstream gradient is a ReduceSum's expanded one.
    expectClose({ x: { shape: [2, 3] }, s: { shape: [2, 3], draw: positive } }, ({ x, s }) =>
      o.reduceSum(o.div(x!, s!), [-1], true),
    );
    expectClose({ x: { shape: [12], draw: (r) => 6 * r() - 3 } }, ({ x }) => {
      const inner = o.mul(o.add(x!, o.mul(o.pow(x!, 3), 0.044715)), Math.sqrt(2 / Math.PI));
      return o.mul(o.mul(x!, 0.5), o.add(o.tanh(inner), 1));
    });
    expectClose({ x: { shape: [12], draw: (r) => 6 * r() - 3 } }, ({ x }) => o.mul(x!, o.sigmoid(x!)));
  });
  it("RMS norm's backward: the mean's gradient unexpanded, one full-size Div", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [3, 6]);
    // As written with a product and as nn.rmsNorm writes it (x², then a Div).
    const y = o.add(
      o.mul(x, o.reciprocal(o.sqrt(o.add(o.reduceMean(o.mul(x, x), [-1], true), 1e-6)))),
      o.div(x, o.sqrt(o.add(o.reduceMean(o.pow(x, 2), [-1], true), 1e-6))),
    );
    const forward = g.nodes.length;
    grad(y, [x], { seed: g.input("dy", "float32", y.shape) });
    const backward = g.nodes.slice(forward);
    // x·x's and x²'s rules read the [3, 1] gradient the ReduceMean rule expanded: the Expands are left unused.
    const used = new Set(backward.flatMap((n) => n.inputs.map((t) => t.id)));
    const expands = backward.filter((n) => n.op === "Expand" && used.has(n.outputs[0]!.id));
    expect(expands).toEqual([]);
    // x / rms: one full-size Div (g / rms); the rms side sums g·y first and divides the [3, 1] sum.
    const fullDivs = backward.filter((n) => n.op === "Div" && n.outputs[0]!.size === x.size);
    expect(fullDivs.length).toBe(1);
  });
  it("attention softmax(Q K^T / sqrt(d)) V over [B, H, L, D]", () => {
    const s = { shape: [1, 2, 3, 4] };
    expectClose({ q: s, k: s, v: s }, ({ q, k, v }) =>
      o.matmul(o.softmax(o.mul(o.matmul(q!, o.transpose(k!, [0, 1, 3, 2])), 0.5)), v!),
    );
  });
  // Heads split from [B, L, H·D] as the models do (L > 2·D, as in real attention); the probabilities also read
  // elsewhere, and a shared 2-D v.
  const heads = (t: Tensor) => o.transpose(o.reshape(t, [1, 6, 2, 2]), [0, 2, 1, 3]);
  const scores = (q: Tensor, k: Tensor) =>
    o.softmax(o.mul(o.matmul(heads(q), o.transpose(heads(k), [0, 1, 3, 2])), 0.5));
  const attention = (q: Tensor, k: Tensor, v: Tensor) => o.matmul(scores(q, k), heads(v));
  it("attention over heads split from [B, L, H·D]; probabilities read twice; v shared by every head", () => {
    const s = { shape: [1, 6, 4] };
    expectClose({ q: s, k: s, v: s }, ({ q, k, v }) => attention(q!, k!, v!));
    expectClose({ q: s, k: s, v: s }, ({ q, k, v }) => {
      const p = scores(q!, k!);
      return o.add(o.matmul(p, heads(v!)), o.reduceSum(o.mul(p, p), [-1], true));
    });
    expectClose({ q: s, k: s, v: { shape: [6, 2] } }, ({ q, k, v }) => o.matmul(scores(q!, k!), v!));
  });
  it("attention's backward makes one L×L pass for the softmax (a Mul), not four", () => {
    const g = new Graph();
    const [q, k, v] = ["q", "k", "v"].map((n) => g.input(n, "float32", [1, 6, 4])) as [
      Tensor,
      Tensor,
      Tensor,
    ];
    const out = attention(q, k, v);
    const forward = g.nodes.length;
    grad(out, [q, k, v], { seed: g.input("dy", "float32", out.shape) });
    const backward = g.nodes.slice(forward);
    const square = (t: Tensor) => t.rank === 4 && t.shape[2] === 6 && t.shape[3] === 6;
    const count = (op: string) => backward.filter((n) => n.op === op && n.inputs.some(square)).length;
    // Softmax's rule: one Mul over L×L (Σ g·y from the L×D output and its gradient instead of an L×L Mul and
    // ReduceSum, and its subtraction inside dO·vᵀ instead of an L×L Sub); the other L×L Mul is the gradient
    // through the scores' scale (× 0.5).
    expect([count("Mul"), count("Sub"), count("ReduceSum")]).toEqual([2, 0, 0]);
  });
});

describe("grad semantics", () => {
  it("stops at stopGradient", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [3]);
    const [gx] = grad(o.reduceSum(o.mul(x, o.stopGradient(x))), [x]);
    expect(Array.from(evaluate(g, { x: [1, -2, 3] }, [gx!])[0]!)).toEqual([1, -2, 3]);
  });
  it("gives zeros for unused or stopped wrt tensors", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 2]);
    const u = g.input("u", "float32", [3]);
    const s = g.input("s", "float32", [1]);
    const [gu, gs] = grad(o.reduceSum(o.add(o.exp(x), o.stopGradient(s))), [u, s]);
    expect(gu!.shape).toEqual([3]);
    const [vu, vs] = evaluate(g, { x: [0, 0, 0, 0], u: [1, 2, 3], s: [4] }, [gu!, gs!]);
    expect(Array.from(vu!)).toEqual([0, 0, 0]);
    expect(Array.from(vs!)).toEqual([0]);
  });
  it("uses a seed for non-scalar y and fails clearly without one", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [3]);
    const seed = g.input("seed", "float32", [3]);
    const y = o.mul(x, x);
    expect(() => grad(y, [x])).toThrow(/has 3 elements; reduce it to a scalar or pass options.seed/);
    const [gx] = grad(y, [x], { seed });
    expect(Array.from(evaluate(g, { x: [1, 2, 3], seed: [1, 10, 100] }, [gx!])[0]!)).toEqual([2, 40, 600]);
  });
  it("rejects integer wrt tensors and names ops without a rule", () => {
    const g = new Graph();
    const i = g.input("i", "int64", [2]);
    const x = g.input("x", "float32", [2]);
    expect(() => grad(o.reduceSum(x), [i])).toThrow(GraphError);
    const [z] = g.scope("blk", () => g.addNode("Frobnicate", [x], {}, [{ shape: [2], dtype: "float32" }]));
    expect(() => grad(o.reduceSum(z!), [x])).toThrow(/no vector-Jacobian rule for op Frobnicate .* at "blk"/);
  });
  it("accumulates through a tensor used many times and through integer side paths", () => {
    const res = expectClose({ x: { shape: [4] } }, ({ x }, g) => {
      const idx = o.cast(o.greater(x!, 0), "int64");
      const picked = o.gather(g.constant([2, 3], [2]), idx, 0);
      return o.add(o.mul(o.mul(x!, x!), picked), o.exp(x!));
    });
    expect(res.analytic[0]!.length).toBe(4);
  });
});

describe("recompute regions", () => {
  function build(marked: boolean) {
    const g = new Graph();
    const x = g.input("x", "float32", [4, 3]);
    const w1 = g.input("w1", "float32", [3, 5]);
    const w2 = g.input("w2", "float32", [5, 3]);
    const block = (h: Tensor, w: Tensor, v: Tensor) =>
      g.scope("block", () => o.add(h, o.matmul(o.tanh(o.matmul(h, w)), v)));
    const run = (h: Tensor) => (marked ? g.recompute(() => block(h, w1, w2)) : block(h, w1, w2));
    const h2 = run(run(x));
    const loss = o.reduceMean(o.mul(h2, h2));
    const forwardNodes = g.nodes.length;
    const grads = grad(loss, [x, w1, w2]);
    return { g, grads, forwardNodes };
  }
  it("gives the same gradient with and without the marker, and the backward reads no region interior", () => {
    const feeds = {
      x: Array.from({ length: 12 }, (_, i) => Math.sin(i)),
      w1: Array.from({ length: 15 }, (_, i) => Math.cos(i * 0.7) * 0.5),
      w2: Array.from({ length: 15 }, (_, i) => Math.sin(i * 1.3) * 0.5),
    };
    const plain = build(false);
    const marked = build(true);
    const a = evaluate(plain.g, feeds, plain.grads);
    const b = evaluate(marked.g, feeds, marked.grads);
    a.forEach((v, i) => {
      expect(Array.from(b[i]!)).toEqual(Array.from(v));
    });
    const forward = marked.g.nodes.slice(0, marked.forwardNodes);
    const backward = marked.g.nodes.slice(marked.forwardNodes);
    // Interior tensors: produced in a region and read only inside the same region.
    const interior = new Set<number>();
    for (const n of forward) {
      if (n.recompute === undefined) continue;
      for (const t of n.outputs) {
        const readers = forward.filter((m) => m.inputs.includes(t));
        if (readers.length > 0 && readers.every((m) => m.recompute === n.recompute)) interior.add(t.id);
      }
    }
    expect(interior.size).toBeGreaterThan(0);
    const leaks = backward.filter((n) => n.inputs.some((t) => interior.has(t.id)));
    expect(leaks.map((n) => `${n.op}#${n.id}`)).toEqual([]);
    const clones = backward.filter((n) => n.attrs[RECOMPUTE_OF_ATTR] !== undefined);
    // Each region re-emits its first MatMul and Tanh (the values the rules need).
    expect(clones.map((n) => n.op).sort()).toEqual(["MatMul", "MatMul", "Tanh", "Tanh"]);
    expect(plain.g.nodes.some((n) => n.attrs[RECOMPUTE_OF_ATTR] !== undefined)).toBe(false);
  });
});

describe("convolution VJP rules vs central differences", () => {
  const cases: [string, number[], number[], o.Conv2dOptions][] = [
    ["plain 3x3", [2, 3, 5, 5], [4, 3, 3, 3], {}],
    [
      "stride 2 with a remainder, asymmetric pads",
      [1, 2, 6, 7],
      [3, 2, 3, 2],
      { stride: 2, padding: [1, 0, 0, 1] },
    ],
    ["dilation and groups", [1, 4, 6, 6], [4, 2, 2, 3], { dilation: [2, 1], groups: 2, stride: [1, 2] }],
  ];
  for (const [name, xs, ws, opts] of cases) {
    it(`Conv ${name} (input, weight, bias)`, () => {
      expectClose({ x: { shape: xs }, w: { shape: ws }, b: { shape: [ws[0]!] } }, ({ x, w, b }) =>
        o.conv2d(x!, w!, b!, opts),
      );
    });
  }
  const tcases: [string, number[], number[], o.ConvTranspose2dOptions][] = [
    ["stride 2 (the VAE upsampler shape)", [1, 3, 3, 3], [3, 2, 4, 4], { stride: 2, padding: 1 }],
    ["output padding, groups", [1, 4, 3, 4], [4, 1, 3, 3], { stride: 2, outputPadding: 1, groups: 2 }],
    ["dilation larger than stride", [1, 2, 4, 3], [2, 2, 2, 2], { dilation: 3, outputPadding: [2, 0] }],
  ];
  for (const [name, xs, ws, opts] of tcases) {
    it(`ConvTranspose ${name} (input, weight, bias)`, () => {
      expectClose(
        { x: { shape: xs }, w: { shape: ws }, b: { shape: [ws[1]! * (opts.groups ?? 1)] } },
        ({ x, w, b }) => o.convTranspose2d(x!, w!, b!, opts),
      );
    });
  }
});
