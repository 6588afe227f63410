import type { DType } from "./dtype.js";
import { GraphError, type Node, type Shape, type Tensor } from "./graph.js";
import {
  add,
  broadcastShapes,
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
  greater,
  less,
  log,
  matmul,
  mul,
  neg,
  pad,
  pow,
  reciprocal,
  reduceMean,
  reduceSum,
  reshape,
  sigmoid,
  sin,
  slice,
  sqrt,
  sub,
  transpose,
  where,
} from "./ops.js";

/**
 * Vector-Jacobian rules, one per differentiable primitive. Each rule emits ordinary primitive ops, so a
 * gradient graph lowers and runs like any other graph. Rules read forward values only through `primal`,
 * which is what lets recompute regions re-emit activations instead of keeping them alive.
 */

export interface VjpArgs {
  readonly node: Node;
  /** Upstream gradient of each output (undefined where none flows). At least one is defined. */
  readonly grads: readonly (Tensor | undefined)[];
  /** The forward value of a tensor as seen from the backward pass (a recomputed clone inside recompute regions). */
  primal(t: Tensor): Tensor;
  /** Whether input `i` needs a gradient; rules skip the work for the others. */
  needs(i: number): boolean;
}

/** Returns one gradient per input (undefined for inputs that need none), each with its input's shape and dtype. */
export type VjpRule = (args: VjpArgs) => readonly (Tensor | undefined)[];

const RULES = new Map<string, VjpRule>();

/** Registers the VJP rule of an op type (used for primitives appended after the built-in ones). */
export function registerVjp(op: string, rule: VjpRule): void {
  RULES.set(op, rule);
}

export function vjpRule(op: string): VjpRule | undefined {
  return RULES.get(op);
}

/** Whether input `index` of an op can carry a gradient at all (shape/axes/index/condition inputs cannot). */
export function isDifferentiableInput(op: string, index: number): boolean {
  switch (op) {
    case "Reshape":
    case "Expand":
    case "Slice":
    case "Gather":
    case "ReduceSum":
    case "ReduceMean":
    case "ReduceMax":
    case "Pad":
    case "Resize":
      return index === 0;
    case "Where":
      return index > 0;
    case "Greater":
    case "Less":
    case "Equal":
      return false;
    default:
      return true;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

/** Sums `g` over the axes along which `shape` was broadcast to `g.shape`, giving a tensor of `shape`. */
export function unbroadcast(g: Tensor, shape: Shape): Tensor {
  if (g.rank === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  g.shape.forEach((d, i) => {
    if (i < lead || (shape[i - lead] === 1 && d !== 1)) axes.push(i);
  });
  const summed = axes.length > 0 ? reduceSum(g, axes, true) : g;
  return reshapeGrad(summed, shape);
}

/**
 * The sum of the gradient contributions to one tensor, added in the order they came. Contributions that are
 * zero-padded pieces along the same axis sitting side by side (the Slice rule's gradients for slices that
 * tile an axis: RoPE's interleaved pairs, split/chunk) are first joined into one Concat, padded once, instead
 * of a Pad per piece over the whole tensor and an Add each. Exact: every element of the sum is one piece's
 * value plus zeros.
 */
export function sumGradients(parts: readonly Tensor[]): Tensor {
  const rest = [...parts];
  for (let i = 0; i < rest.length; i++) {
    for (let j = i + 1; j < rest.length; j++) {
      const joined = joinPadded(rest[i]!, rest[j]!);
      if (!joined) continue;
      rest[i] = joined;
      rest.splice(j, 1);
      j = i;
    }
  }
  return rest.reduce((a, b) => add(a, b));
}

/** pad(a) + pad(b) as one padded Concat when a and b are adjacent along the same axis; else undefined. */
function joinPadded(a: Tensor, b: Tensor): Tensor | undefined {
  const pa = zeroPadded(a);
  const pb = zeroPadded(b);
  if (!pa || !pb || pa.axis !== pb.axis) return undefined;
  const pair = pa.end === pb.start ? [pa, pb] : pb.end === pa.start ? [pb, pa] : undefined;
  if (!pair) return undefined;
  const [first, second] = pair as [PaddedPiece, PaddedPiece];
  const joined = concat([first.piece, second.piece], first.axis);
  return padAxis(joined, first.axis, first.start, a.shape[first.axis]! - second.end);
}

interface PaddedPiece {
  piece: Tensor;
  axis: number;
  /** Where the piece starts and ends along `axis` in the padded tensor. */
  start: number;
  end: number;
}

/** `t` as Pad(piece) with zeros before and/or after along a single axis, or undefined. */
function zeroPadded(t: Tensor): PaddedPiece | undefined {
  const p = t.producer;
  if (p?.op !== "Pad" || ((p.attrs.mode as string | undefined) ?? "constant") !== "constant")
    return undefined;
  const [x, counts, fill] = p.inputs;
  if (!x || !counts || p.inputs.length > 3 || counts.source.kind !== "constant") return undefined;
  if (fill && (fill.source.kind !== "constant" || Number(fill.source.data[0]) !== 0)) return undefined;
  const pads = Array.from(counts.source.data as ArrayLike<number | bigint>, Number);
  const axes = x.shape.map((_, i) => i).filter((i) => pads[i] !== 0 || pads[i + x.rank] !== 0);
  if (axes.length !== 1) return undefined;
  const axis = axes[0]!;
  return { piece: x, axis, start: pads[axis]!, end: pads[axis]! + x.shape[axis]! };
}

/** `t` with `before`/`after` zeros along `axis` (no node when both are 0). */
function padAxis(t: Tensor, axis: number, before: number, after: number): Tensor {
  if (before === 0 && after === 0) return t;
  const pads = new Array<number>(2 * t.rank).fill(0);
  pads[axis] = before;
  pads[axis + t.rank] = after;
  return pad(t, pads);
}

/**
 * `t` reshaped to `shape` with as few Reshape nodes as it takes: none when it has that shape already (a
 * keepdims reduction's gradient, a Reshape's gradient that is itself a Reshape's), one from the input of a
 * Reshape that made `t` (outside recompute regions, whose interior the backward reads only through `primal`).
 * Each Reshape left out is one kernel less per run (the tiny FLUX step had 57 that changed nothing).
 */
function reshapeGrad(t: Tensor, shape: Shape): Tensor {
  if (sameShape(t.shape, shape)) return t;
  const p = t.producer;
  if (p?.op === "Reshape" && p.recompute === undefined) {
    const source = p.inputs[0]!;
    return sameShape(source.shape, shape) ? source : reshape(source, [...shape]);
  }
  return reshape(t, [...shape]);
}

/** Zeros of a shape without a full-size literal in the model. */
export function zeros(like: Tensor, shape: Shape = like.shape, dtype: DType = like.dtype): Tensor {
  return expand(like.graph.constant(0, [], dtype), [...shape]);
}

/** The integer values of a constant input (axes, starts, …); rules need them at build time. */
export function constInts(node: Node, index: number): number[] | undefined {
  const t = node.inputs[index];
  if (!t) return undefined;
  if (t.source.kind !== "constant") {
    throw new GraphError(
      `${node.op} at "${node.scope}": autodiff needs input ${index} (${t}) to be a constant, not computed`,
    );
  }
  return Array.from(t.source.data as ArrayLike<number | bigint>, Number);
}

/** Whether `t` is a literal of all ones (nn.layerNorm's scale without a weight): multiplying by it is a no-op. */
function isOnes(t: Tensor): boolean {
  return (
    t.source.kind === "constant" &&
    Array.from(t.source.data as ArrayLike<number | bigint>).every((v) => Number(v) === 1)
  );
}

const normAxis = (a: number, rank: number) => (a < 0 ? a + rank : a);

/**
 * Transpose, except that transposing a Transpose back to the identity returns the original's input: the
 * backward of `matmul(x, transpose(W))` (every linear layer) then never materialises Wᵀ or (dW)ᵀ.
 */
function permute(t: Tensor, perm: readonly number[], primal: (t: Tensor) => Tensor = (v) => v): Tensor {
  const p = t.producer;
  if (p?.op === "Transpose" && !p.attrs._stop_gradient) {
    const rank = perm.length;
    const inner = (p.attrs.perm as readonly number[] | undefined) ?? perm.map((_, i) => rank - 1 - i);
    if (inner.every((_, i) => inner[perm[i]!] === i)) return primal(p.inputs[0]!);
  }
  return transpose(t, perm);
}

const swapLast = (t: Tensor, primal?: (t: Tensor) => Tensor) => {
  const perm = t.shape.map((_, i) => i);
  perm[t.rank - 2] = t.rank - 1;
  perm[t.rank - 1] = t.rank - 2;
  return permute(t, perm, primal);
};

/** Whether `t` is a Transpose that swaps exactly its last two axes. */
function swapsLastTwo(t: Tensor): boolean {
  const p = t.producer;
  if (p?.op !== "Transpose" || p.attrs._stop_gradient || t.rank < 2) return false;
  const perm = (p.attrs.perm as readonly number[] | undefined) ?? t.shape.map((_, i) => t.rank - 1 - i);
  return perm.every((q, i) => (i < t.rank - 2 ? q === i : q === 2 * t.rank - 3 - i));
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** A 0/1 float mask, plus 0.5 where the two operands tie, so ties split the gradient evenly. */
function winMask(win: Tensor, a: Tensor, b: Tensor, dtype: DType): Tensor {
  return add(cast(win, dtype), mul(cast(equal(a, b), dtype), 0.5));
}

function unary(op: string, f: (g: Tensor, x: () => Tensor, y: () => Tensor) => Tensor): void {
  registerVjp(op, ({ node, grads, primal }) => [
    f(
      grads[0]!,
      () => primal(node.inputs[0]!),
      () => primal(node.outputs[0]!),
    ),
  ]);
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise

/** Binary rules get the operands lazily, so e.g. Add never asks for (or recomputes) a forward value. */
function binary(
  op: string,
  f: (g: Tensor, a: () => Tensor, b: () => Tensor, y: () => Tensor, i: number) => Tensor,
): void {
  registerVjp(op, ({ node, grads, primal, needs }) => {
    const [a, b] = node.inputs as [Tensor, Tensor];
    const g = grads[0]!;
    const pa = () => primal(a);
    const pb = () => primal(b);
    const y = () => primal(node.outputs[0]!);
    return [a, b].map((t, i) => (needs(i) ? unbroadcast(f(g, pa, pb, y, i), t.shape) : undefined));
  });
}

/**
 * The input of an Expand `g` when broadcasting it against `shape` gives `g`'s shape anyway: a Mul or Div then
 * reads the small tensor instead of a materialised copy (the ReduceMean/ReduceSum rules expand their gradient,
 * and RMSNorm's x² is the next rule). The results are the same numbers.
 */
function unexpanded(g: Tensor, shape: Shape): Tensor {
  const p = g.producer;
  if (p?.op !== "Expand") return g;
  const small = p.inputs[0]!;
  const out = broadcastShapes(small.shape, shape);
  return out && sameShape(out, g.shape) ? small : g;
}

binary("Add", (g) => g);
binary("Sub", (g, _a, _b, _y, i) => (i === 0 ? g : neg(g)));
binary("Mul", (g, a, b, _y, i) => {
  const other = i === 0 ? b() : a();
  return mul(unexpanded(g, other.shape), other);
});
// For a broadcast divisor (RMSNorm's x / rms), −Σ g·y / b: summed over the broadcast axes before dividing by b,
// which is constant along them, so the Div and Neg run on b's size instead of the full tensor's.
binary("Div", (g, _a, b, y, i) =>
  i === 0 ? div(unexpanded(g, b().shape), b()) : neg(div(unbroadcast(mul(g, y()), b().shape), b())),
);
binary("Pow", (g, a, b, y, i) => {
  if (i === 0) {
    const slope = powDerivative(a(), b());
    return mul(unexpanded(g, slope.shape), slope);
  }
  // d/db a^b = a^b ln a, taken as 0 where a ≤ 0 (ln undefined; the forward value is 0 or NaN there).
  return mul(g, where(greater(a(), 0), mul(y(), log(a())), 0));
});

/**
 * b·a^(b−1). A literal exponent (x², x³, √x as Pow) gets plain products: onnxruntime's Pow only has fast
 * paths for a few exponents and runs x^1 through std::pow, several times slower than a Mul.
 */
function powDerivative(a: Tensor, b: Tensor): Tensor {
  const k = b.source.kind === "constant" && b.size === 1 ? Number(b.source.data[0]) : undefined;
  switch (k) {
    case undefined:
      return mul(b, pow(a, sub(b, 1)));
    case 1:
      return expand(a.graph.constant(1, [], a.dtype), [...a.shape]);
    case 2:
      return mul(a, 2);
    case 3:
      return mul(mul(a, a), 3);
    case 0.5:
      return div(0.5, sqrt(a));
    case -1:
      return neg(reciprocal(mul(a, a)));
    default:
      return mul(pow(a, k - 1), k);
  }
}
binary("Max", (g, a, b, _y, i) =>
  mul(g, winMask(i === 0 ? greater(a(), b()) : greater(b(), a()), a(), b(), g.dtype)),
);
binary("Min", (g, a, b, _y, i) =>
  mul(g, winMask(i === 0 ? less(a(), b()) : less(b(), a()), a(), b(), g.dtype)),
);

unary("Neg", (g) => neg(g));
unary("Exp", (g, _x, y) => mul(g, y()));
unary("Log", (g, x) => div(g, x()));
unary("Sqrt", (g, _x, y) => div(mul(g, 0.5), y()));
unary("Reciprocal", (g, _x, y) => {
  const r = y();
  return neg(mul(g, mul(r, r)));
});
unary("Tanh", (g, _x, y) => {
  const t = y();
  return mul(g, sub(1, mul(t, t)));
});
unary("Erf", (g, x) => {
  const v = x();
  return mul(g, mul(exp(neg(mul(v, v))), 2 / Math.sqrt(Math.PI)));
});
unary("Sigmoid", (g, _x, y) => {
  const s = y();
  return mul(g, mul(s, sub(1, s)));
});
// Subgradient 0 at the kink for Abs and Relu.
unary("Abs", (g, x) => mul(g, sub(cast(greater(x(), 0), g.dtype), cast(less(x(), 0), g.dtype))));
unary("Relu", (g, x) => where(greater(x(), 0), g, 0));
unary("Sin", (g, x) => mul(g, cos(x())));
unary("Cos", (g, x) => neg(mul(g, sin(x()))));
registerVjp("Gelu", ({ node, grads, primal }) => {
  const x = primal(node.inputs[0]!);
  const g = grads[0]!;
  const x2 = mul(x, x);
  if (node.attrs.approximate === "tanh") {
    // 0.5·(1 + tanh(u)) = sigmoid(2u), so y = x·s with s = sigmoid(x·(c1 + c2·x²)) and
    // dy/dx = s + x·s·(1 − s)·(c1 + 3·c2·x²) = s·(1 + (1 − s)·x·(c1 + 3·c2·x²)): 13 passes instead of the
    // composite's 15 backward passes on top of its 9 forward ones.
    const c1 = 2 * Math.sqrt(2 / Math.PI);
    const c2 = c1 * 0.044715;
    const s = sigmoid(mul(x, add(mul(x2, c2), c1)));
    const slope = mul(x, add(mul(x2, 3 * c2), c1));
    return [mul(g, mul(s, add(mul(sub(1, s), slope), 1)))];
  }
  // Φ(x) + x·φ(x).
  const cdf = mul(add(erf(mul(x, Math.SQRT1_2)), 1), 0.5);
  const pdf = mul(exp(mul(x2, -0.5)), 1 / Math.sqrt(2 * Math.PI));
  return [mul(g, add(cdf, mul(x, pdf)))];
});
registerVjp("Identity", ({ node, grads }) => [node.attrs._stop_gradient ? undefined : grads[0]]);

registerVjp("Where", ({ node, grads, primal, needs }) => {
  const [c, a, b] = node.inputs as [Tensor, Tensor, Tensor];
  const g = grads[0]!;
  const cond = primal(c);
  return [
    undefined,
    needs(1) ? unbroadcast(where(cond, g, 0), a.shape) : undefined,
    needs(2) ? unbroadcast(where(cond, 0, g), b.shape) : undefined,
  ];
});

registerVjp("Cast", ({ node, grads }) => {
  const x = node.inputs[0]!;
  return [cast(grads[0]!, x.dtype)];
});

// ---------------------------------------------------------------------------------------------------------
// Linear algebra and layout

registerVjp("MatMul", ({ node, grads, primal, needs }) => {
  const [a, b] = node.inputs as [Tensor, Tensor];
  const g = grads[0]!;
  let ga: Tensor | undefined;
  let gb: Tensor | undefined;
  if (needs(0)) ga = unbroadcast(matmul(g, swapLast(primal(b), primal)), a.shape);
  if (needs(1)) {
    if (b.rank === 2 && a.rank > 2) {
      // A shared weight: fold the batch into the contraction, one GEMM instead of a batch and a sum.
      const k = a.shape[a.rank - 1]!;
      const n = b.shape[1]!;
      const a2 = reshape(primal(a), [-1, k]);
      const g2 = reshape(g, [-1, n]);
      // For b = Wᵀ compute (dW)ᵀ as a transposed product, so the Transpose rule's permute cancels it.
      gb =
        b.producer?.op === "Transpose"
          ? transpose(matmul(transpose(g2, [1, 0]), a2), [1, 0])
          : matmul(transpose(a2, [1, 0]), g2);
    } else if (swapsLastTwo(b) && sameShape(g.shape.slice(0, -2), b.shape.slice(0, -2))) {
      // b = kᵀ (attention scores q kᵀ): compute dk = gᵀ a and hand back its transpose, which the Transpose
      // rule's permute cancels, instead of transposing a for the product and the product back for dk.
      gb = swapLast(matmul(swapLast(g), primal(a)));
    } else {
      gb = unbroadcast(matmul(swapLast(primal(a), primal), g), b.shape);
    }
  }
  return [ga, gb];
});

registerVjp("Reshape", ({ node, grads }) => [reshapeGrad(grads[0]!, node.inputs[0]!.shape)]);

registerVjp("Transpose", ({ node, grads }) => {
  const x = node.inputs[0]!;
  const perm = (node.attrs.perm as readonly number[] | undefined) ?? x.shape.map((_, i) => x.rank - 1 - i);
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return [permute(grads[0]!, inv)];
});

registerVjp("Expand", ({ node, grads }) => [unbroadcast(grads[0]!, node.inputs[0]!.shape)]);

registerVjp("Concat", ({ node, grads, needs }) => {
  const g = grads[0]!;
  const axis = normAxis(node.attrs.axis as number, g.rank);
  let at = 0;
  return node.inputs.map((t, i) => {
    const start = at;
    at += t.shape[axis]!;
    return needs(i) ? slice(g, [start], [at], [axis]) : undefined;
  });
});

registerVjp("Slice", ({ node, grads }) => {
  const x = node.inputs[0]!;
  const y = node.outputs[0]!;
  const starts = constInts(node, 1)!;
  const axes = (constInts(node, 3) ?? starts.map((_, i) => i)).map((a) => normAxis(a, x.rank));
  const steps = constInts(node, 4) ?? starts.map(() => 1);
  let g = grads[0]!;
  axes.forEach((axis, i) => {
    const dim = x.shape[axis]!;
    const step = steps[i]!;
    if (step < 1) {
      throw new GraphError(
        `Slice at "${node.scope}": autodiff supports positive steps only, got ${step}; slice forward and reverse with a Gather instead`,
      );
    }
    const start = Math.min(Math.max(starts[i]! < 0 ? starts[i]! + dim : starts[i]!, 0), dim);
    g = scatterAxis(g, axis, dim, start, step, y.shape[axis]!);
  });
  return [g];
});

/**
 * Places the n slices of `g` along `axis` at start, start+step, … of a zero tensor with `dim` there, by Pad
 * (constant 0): the zeros are written by the Pad kernel at run time, so no zero block exists as a constant that
 * constant folding would materialise (a zero literal expanded and concatenated is one).
 */
function scatterAxis(g: Tensor, axis: number, dim: number, start: number, step: number, n: number): Tensor {
  let spread = g;
  let len = n;
  if (step > 1 && n > 0) {
    // Interleave step-1 zero rows after each row: [.., n, ..] → [.., n, 1, ..] → [.., n, step, ..] → [.., n·step, ..].
    const split = [...g.shape.slice(0, axis + 1), 1, ...g.shape.slice(axis + 1)];
    const rows = padAxis(reshape(g, split), axis + 1, 0, step - 1);
    len = Math.min(n * step, dim - start);
    spread = reshape(
      rows,
      g.shape.map((s, i) => (i === axis ? n * step : s)),
    );
    if (len < n * step) spread = slice(spread, [0], [len], [axis]);
  }
  return padAxis(spread, axis, start, dim - start - len);
}

registerVjp("Pad", ({ node, grads }) => {
  const x = node.inputs[0]!;
  const mode = (node.attrs.mode as string | undefined) ?? "constant";
  if (mode !== "constant" || node.inputs.length > 3)
    throw new GraphError(`Pad at "${node.scope}": autodiff supports constant mode over every axis only`);
  const pads = constInts(node, 1)!;
  if (pads.some((p) => p < 0))
    throw new GraphError(`Pad at "${node.scope}": autodiff supports non-negative pads only, got [${pads}]`);
  const axes = x.shape.map((_, i) => i).filter((i) => pads[i]! > 0 || pads[i + x.rank]! > 0);
  if (axes.length === 0) return [grads[0]!];
  const starts = axes.map((i) => pads[i]!);
  return [
    slice(
      grads[0]!,
      starts,
      axes.map((i, k) => starts[k]! + x.shape[i]!),
      axes,
    ),
  ];
});

registerVjp("Gather", ({ node, grads, primal }) => {
  // A scatter-add written as a one-hot matmul, so it stays within the primitives: O(indices × dim) memory.
  const x = node.inputs[0]!;
  const g = grads[0]!;
  const axis = node.attrs.axis as number;
  const dim = x.shape[axis]!;
  const gr = x.graph;
  let idx = primal(node.inputs[1]!);
  if (idx.dtype !== "int64") idx = cast(idx, "int64");
  idx = reshape(idx, [idx.size, 1]);
  idx = where(less(idx, gr.constant(0, [], "int64")), add(idx, gr.constant(dim, [], "int64")), idx);
  const range = gr.constant(
    Array.from({ length: dim }, (_, i) => i),
    [1, dim],
    "int64",
  );
  const oneHot = cast(equal(idx, range), g.dtype);
  const outer = x.shape.slice(0, axis).reduce((p, d) => p * d, 1);
  const inner = x.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const folded = reshape(g, [outer, idx.shape[0]!, inner]);
  return [reshape(matmul(transpose(oneHot, [1, 0]), folded), [...x.shape])];
});

// ---------------------------------------------------------------------------------------------------------
// Reductions and softmax

function reducedAxes(node: Node): { axes: number[]; keepShape: number[] } {
  const x = node.inputs[0]!;
  const raw = constInts(node, 1) ?? [];
  const axes = raw.length === 0 ? x.shape.map((_, i) => i) : raw.map((a) => normAxis(a, x.rank));
  return { axes, keepShape: x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) };
}

registerVjp("ReduceSum", ({ node, grads }) => {
  const x = node.inputs[0]!;
  const { keepShape } = reducedAxes(node);
  return [expand(reshapeGrad(grads[0]!, keepShape), [...x.shape])];
});

registerVjp("ReduceMean", ({ node, grads }) => {
  const x = node.inputs[0]!;
  const { keepShape } = reducedAxes(node);
  const count = x.size / keepShape.reduce((p, d) => p * d, 1);
  // Divide by the integer count rather than multiply by 1/count, which a float32 literal would round.
  return [expand(reshapeGrad(div(grads[0]!, count), keepShape), [...x.shape])];
});

registerVjp("ReduceMax", ({ node, grads, primal }) => {
  // Ties share the gradient evenly, so the rule is the average of the subgradients of the tied maxima.
  const x = primal(node.inputs[0]!);
  const { axes, keepShape } = reducedAxes(node);
  const y = reshapeGrad(primal(node.outputs[0]!), keepShape);
  const mask = cast(equal(x, y), x.dtype);
  const share = div(mask, reduceSum(mask, axes, true));
  return [mul(reshapeGrad(grads[0]!, keepShape), share)];
});

registerVjp("Softmax", ({ node, grads, primal }) => {
  const y = primal(node.outputs[0]!);
  const g = grads[0]!;
  const axis = normAxis((node.attrs.axis as number | undefined) ?? -1, y.rank);
  const shifted = attentionShifted(node, g, axis, primal) ?? sub(g, reduceSum(mul(g, y), [axis], true));
  return [mul(y, shifted)];
});

/**
 * g − Σⱼ gᵢⱼ·yᵢⱼ for attention probabilities y whose gradient is g = dO·vᵀ, from o = y·v. The row sums equal
 * rᵢ = Σ_d dOᵢd·oᵢd, since Σⱼ (Σ_d dOᵢd vⱼd) yᵢⱼ = Σ_d dOᵢd (y v)ᵢd: they read the B·H·L·d output and its
 * gradient instead of two B·H·L·L tensors. And the subtraction rides in the product itself,
 * [dO, −r]·[v, 1]ᵀ = dO·vᵀ − r (one more column to contract) instead of another pass over B·H·L·L: the rule's
 * only full-size pass left is the final y·(…). Undefined when g is not such a product.
 */
function attentionShifted(
  node: Node,
  g: Tensor,
  axis: number,
  primal: (t: Tensor) => Tensor,
): Tensor | undefined {
  const y = node.outputs[0]!;
  const p = g.producer;
  if (
    axis !== y.rank - 1 ||
    p?.op !== "MatMul" ||
    !sameShape(p.inputs[0]!.shape.slice(0, -1), y.shape.slice(0, -1))
  )
    return undefined;
  const [dO, vT] = p.inputs as [Tensor, Tensor];
  // g = dO·vᵀ as built, and a forward node computes o = y·v: then the identity holds whatever made g (in
  // practice the MatMul rule of that node, y's only consumer with a gradient: several would sum to an Add).
  const forward = matmulsOf(y).find(
    (n) =>
      n.outputs[0]!.dtype === y.dtype &&
      sameShape(n.outputs[0]!.shape, dO.shape) &&
      isSwapOf(vT, primal(n.inputs[1]!), primal),
  );
  if (!forward) return undefined;
  const v = primal(forward.inputs[1]!);
  const r = reduceSum(mul(dO, primal(forward.outputs[0]!)), [axis], true);
  const ones = expand(y.graph.constant(1, [], v.dtype), [...v.shape.slice(0, -1), 1]);
  return matmul(concat([dO, neg(r)], -1), swapLast(concat([v, ones], -1)));
}

/**
 * The MatMul nodes whose left operand is `t`. Graphs only ever append nodes, so each graph's index is extended
 * with the MatMuls added since the last lookup: one pass over the graph in all, where a scan of every node per
 * Softmax rule (one per attention head chunk) took 15 % of building a full-size FLUX training graph with one head
 * at a time.
 */
function matmulsOf(t: Tensor): readonly Node[] {
  const graph = t.graph;
  let index = matmulIndex.get(graph);
  if (!index) matmulIndex.set(graph, (index = { indexed: 0, byLeft: new Map() }));
  for (; index.indexed < graph.nodes.length; index.indexed++) {
    const n = graph.nodes[index.indexed]!;
    if (n.op !== "MatMul") continue;
    const left = n.inputs[0]!;
    const list = index.byLeft.get(left);
    if (list) list.push(n);
    else index.byLeft.set(left, [n]);
  }
  return index.byLeft.get(t) ?? [];
}

const matmulIndex = new WeakMap<Tensor["graph"], { indexed: number; byLeft: Map<Tensor, Node[]> }>();

/** Whether `t` is `v` with its last two axes swapped, as the MatMul rule's swapLast(v) builds it. */
function isSwapOf(t: Tensor, v: Tensor, primal: (t: Tensor) => Tensor): boolean {
  if (swapsLastTwo(t) && t.producer!.inputs[0] === v) return true;
  return swapsLastTwo(v) && primal(v.producer!.inputs[0]!) === t;
}

registerVjp("LayerNormalization", ({ node, grads, primal, needs }) => {
  const [x, scale, bias] = node.inputs as [Tensor, Tensor, Tensor | undefined];
  const [gy, gMean, gInv] = grads;
  const axis = node.attrs.axis as number;
  const axes = x.shape.map((_, i) => i).filter((i) => i >= axis);
  const n = x.shape.slice(axis).reduce((p, d) => p * d, 1);
  const mean = primal(node.outputs[1]!);
  const inv = primal(node.outputs[2]!);
  // The normalized input x̂ = (x − μ)/σ, from the statistics the forward node already produced.
  let xhat: Tensor | undefined;
  const normalized = () => {
    xhat ??= mul(sub(primal(x), mean), inv);
    return xhat;
  };
  let gx: Tensor | undefined;
  const accumulate = (t: Tensor) => {
    gx = gx ? add(gx, t) : t;
  };
  if (needs(0)) {
    if (gy) {
      // dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))/σ with ĝ = g·scale: the statistics' own gradients folded in.
      const gh = isOnes(scale) ? gy : mul(gy, primal(scale));
      const m1 = reduceMean(gh, axes, true);
      const m2 = reduceMean(mul(gh, normalized()), axes, true);
      accumulate(mul(sub(sub(gh, m1), mul(normalized(), m2)), inv));
    }
    // dμ/dx = 1/n and d(1/σ)/dx = −x̂/(n·σ²), for graphs that use the statistics themselves.
    if (gMean) accumulate(expand(div(gMean, n), [...x.shape]));
    if (gInv) accumulate(mul(normalized(), div(mul(mul(gInv, inv), inv), -n)));
  }
  return [
    gx,
    needs(1) && gy ? unbroadcast(mul(gy, normalized()), scale.shape) : undefined,
    needs(2) && gy && bias ? unbroadcast(gy, bias.shape) : undefined,
  ];
});

// ---------------------------------------------------------------------------------------------------------
// Convolutions (NCHW, 2-D). Conv and ConvTranspose are each other's input-gradient, and both weight
// gradients are one more convolution in which the batch axis is the contraction.

interface ConvAttrs {
  stride: [number, number];
  dilation: [number, number];
  padding: [number, number, number, number];
  groups: number;
}

function convAttrs(node: Node): ConvAttrs {
  const a = (k: string, d: number[]) => [...((node.attrs[k] as readonly number[] | undefined) ?? d)];
  return {
    stride: a("strides", [1, 1]) as [number, number],
    dilation: a("dilations", [1, 1]) as [number, number],
    padding: a("pads", [0, 0, 0, 0]) as [number, number, number, number],
    groups: (node.attrs.group as number | undefined) ?? 1,
  };
}

/**
 * d<G, conv(X, W)>/dW for X [N, Cin, H, W] and G [N, Cout, OH, OW]: [Cout, Cin/groups, kh, kw]. Per group,
 * a convolution of X (channels as batch, N as channels) with G as the kernel, stride and dilation swapped.
 */
function convWeightGrad(x: Tensor, g: Tensor, kh: number, kw: number, at: ConvAttrs): Tensor {
  const cpg = x.shape[1]! / at.groups;
  const opg = g.shape[1]! / at.groups;
  const parts: Tensor[] = [];
  for (let gi = 0; gi < at.groups; gi++) {
    const xg = at.groups === 1 ? x : slice(x, [gi * cpg], [(gi + 1) * cpg], [1]);
    const gg = at.groups === 1 ? g : slice(g, [gi * opg], [(gi + 1) * opg], [1]);
    let wg = conv2d(transpose(xg, [1, 0, 2, 3]), transpose(gg, [1, 0, 2, 3]), undefined, {
      stride: at.dilation,
      dilation: at.stride,
      padding: at.padding,
    });
    // The taps past the kernel's extent only see the stride remainder; drop them.
    if (wg.shape[2] !== kh || wg.shape[3] !== kw) wg = slice(wg, [0, 0], [kh, kw], [2, 3]);
    parts.push(transpose(wg, [1, 0, 2, 3]));
  }
  return parts.length === 1 ? parts[0]! : concat(parts, 0);
}

/** Crops or checks a spatial result to the wanted [H, W] (a stride remainder can leave extra rows). */
function fitSpatial(t: Tensor, h: number, w: number, op: string): Tensor {
  if (t.shape[2] === h && t.shape[3] === w) return t;
  if (t.shape[2]! < h || t.shape[3]! < w) {
    throw new GraphError(`${op}: input gradient came out ${t} for spatial size ${h}x${w} (engine bug)`);
  }
  return slice(t, [0, 0], [h, w], [2, 3]);
}

registerVjp("Conv", ({ node, grads, primal, needs }) => {
  const [x, w] = node.inputs as [Tensor, Tensor];
  const g = grads[0]!;
  const at = convAttrs(node);
  const [kh, kw] = [w.shape[2]!, w.shape[3]!];
  let gx: Tensor | undefined;
  if (needs(0)) {
    const [h, wd] = [x.shape[2]!, x.shape[3]!];
    // Rows/columns of x that the last stride step did not reach come back as output padding.
    const extra = (i: 0 | 1, size: number, k: number) =>
      size +
      at.padding[i] +
      at.padding[i + 2]! -
      at.dilation[i] * (k - 1) -
      1 -
      at.stride[i] * (g.shape[i + 2]! - 1);
    // The remainder is < stride, so it is always a valid output padding.
    const outputPadding: [number, number] = [extra(0, h, kh), extra(1, wd, kw)];
    gx = convTranspose2d(g, primal(w), undefined, { ...at, outputPadding });
  }
  return [
    gx,
    needs(1) ? convWeightGrad(primal(x), g, kh, kw, at) : undefined,
    needs(2) ? reduceSum(g, [0, 2, 3]) : undefined,
  ];
});

registerVjp("ConvTranspose", ({ node, grads, primal, needs }) => {
  const [x, w] = node.inputs as [Tensor, Tensor];
  const g = grads[0]!;
  const at = convAttrs(node);
  const [kh, kw] = [w.shape[2]!, w.shape[3]!];
  return [
    needs(0)
      ? fitSpatial(conv2d(g, primal(w), undefined, at), x.shape[2]!, x.shape[3]!, "ConvTranspose")
      : undefined,
    // <G, convT(X, W)> = <X, conv(G, W)>, so W's gradient is conv's weight gradient with the roles swapped.
    needs(1) ? convWeightGrad(g, primal(x), kh, kw, at) : undefined,
    needs(2) ? reduceSum(g, [0, 2, 3]) : undefined,
  ];
});
