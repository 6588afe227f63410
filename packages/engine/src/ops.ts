import type { DType } from "./dtype.js";
import { type Attrs, type Graph, GraphError, type Shape, Tensor } from "./graph.js";

/**
 * Primitive ops: each is exactly one ONNX node (opset 21 semantics), with shapes checked and inferred at
 * build time. Autodiff has a vector-Jacobian rule for each differentiable primitive; composite layers
 * (linear, norms, attention, rotary embeddings) are built from these in `nn.ts`.
 *
 * Attributes whose names start with "_" are engine-private (e.g. `_stop_gradient`) and are not lowered.
 */

export type Operand = Tensor | number;

const FLOAT_DTYPES: ReadonlySet<DType> = new Set(["float32", "float16", "float64", "bfloat16"]);

export function isFloat(dtype: DType): boolean {
  return FLOAT_DTYPES.has(dtype);
}

function fail(op: string, g: Graph, message: string): never {
  const where = g.currentScope ? ` at "${g.currentScope}"` : "";
  throw new GraphError(`${op}${where}: ${message}`);
}

const fmt = (s: Shape) => `[${s.join(",")}]`;

/** Numpy-style broadcast of two shapes, or undefined when they do not broadcast. */
export function broadcastShapes(a: Shape, b: Shape): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out.push(da === 1 ? db : da);
  }
  return out;
}

function graphOf(op: string, operands: readonly Operand[]): Graph {
  for (const o of operands) if (o instanceof Tensor) return o.graph;
  throw new GraphError(`${op}: at least one operand must be a Tensor`);
}

/** Turns numbers into scalar constants of the dtype of the tensor operand. */
function lift(op: string, a: Operand, b: Operand): [Tensor, Tensor] {
  const g = graphOf(op, [a, b]);
  const dtype = (a instanceof Tensor ? a : (b as Tensor)).dtype;
  const ta = a instanceof Tensor ? a : g.constant(a, [], dtype);
  const tb = b instanceof Tensor ? b : g.constant(b, [], dtype);
  return [ta, tb];
}

function binary(op: string, a: Operand, b: Operand, outDtype?: DType): Tensor {
  const [x, y] = lift(op, a, b);
  if (x.dtype !== y.dtype)
    fail(op, x.graph, `dtypes differ: ${x.dtype} ${fmt(x.shape)} vs ${y.dtype} ${fmt(y.shape)}`);
  const shape = broadcastShapes(x.shape, y.shape);
  if (!shape) fail(op, x.graph, `shapes ${fmt(x.shape)} and ${fmt(y.shape)} do not broadcast`);
  return x.graph.addNode(op, [x, y], {}, [{ shape, dtype: outDtype ?? x.dtype }])[0]!;
}

export const add = (a: Operand, b: Operand) => binary("Add", a, b);
export const sub = (a: Operand, b: Operand) => binary("Sub", a, b);
export const mul = (a: Operand, b: Operand) => binary("Mul", a, b);
export const div = (a: Operand, b: Operand) => binary("Div", a, b);
export const pow = (a: Operand, b: Operand) => binary("Pow", a, b);
/** Elementwise maximum (ONNX Max with two inputs). */
export const maximum = (a: Operand, b: Operand) => binary("Max", a, b);
export const minimum = (a: Operand, b: Operand) => binary("Min", a, b);
export const greater = (a: Operand, b: Operand) => binary("Greater", a, b, "bool");
export const less = (a: Operand, b: Operand) => binary("Less", a, b, "bool");
export const equal = (a: Operand, b: Operand) => binary("Equal", a, b, "bool");

function unary(op: string, x: Tensor, attrs: Attrs = {}): Tensor {
  if (!isFloat(x.dtype) && op !== "Neg" && op !== "Abs" && op !== "Identity") {
    fail(op, x.graph, `needs a floating-point input, got ${x.dtype}`);
  }
  return x.graph.addNode(op, [x], attrs, [{ shape: x.shape, dtype: x.dtype }])[0]!;
}

export const neg = (x: Tensor) => unary("Neg", x);
export const exp = (x: Tensor) => unary("Exp", x);
export const log = (x: Tensor) => unary("Log", x);
export const sqrt = (x: Tensor) => unary("Sqrt", x);
export const reciprocal = (x: Tensor) => unary("Reciprocal", x);
export const tanh = (x: Tensor) => unary("Tanh", x);
export const erf = (x: Tensor) => unary("Erf", x);
export const sigmoid = (x: Tensor) => unary("Sigmoid", x);
export const abs = (x: Tensor) => unary("Abs", x);
export const sin = (x: Tensor) => unary("Sin", x);
export const cos = (x: Tensor) => unary("Cos", x);
export const relu = (x: Tensor) => unary("Relu", x);
/** Identity in the forward pass; autodiff treats it as a constant (no gradient flows through). */
export const stopGradient = (x: Tensor) => unary("Identity", x, { _stop_gradient: 1 });

/**
 * ONNX Gelu (opset 20): x·Φ(x), exact (erf) or with the tanh approximation. One kernel instead of the
 * nine elementwise passes of the composite; onnxruntime's CPU provider has it for float32 only.
 */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  return unary("Gelu", x, { approximate });
}

/** Selects `a` where `cond` is true, else `b`; all three broadcast. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const [x, y] = lift("Where", a, b);
  const g = cond.graph;
  if (cond.dtype !== "bool") fail("Where", g, `condition must be bool, got ${cond.dtype}`);
  if (x.dtype !== y.dtype) fail("Where", g, `branch dtypes differ: ${x.dtype} vs ${y.dtype}`);
  const s1 = broadcastShapes(x.shape, y.shape);
  const shape = s1 && broadcastShapes(cond.shape, s1);
  if (!shape)
    fail("Where", g, `shapes ${fmt(cond.shape)}, ${fmt(x.shape)}, ${fmt(y.shape)} do not broadcast`);
  return g.addNode("Where", [cond, x, y], {}, [{ shape, dtype: x.dtype }])[0]!;
}

/** Numpy matmul for rank ≥ 2: batch dims broadcast, contracts a's last dim with b's second-to-last. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const g = a.graph;
  if (a.rank < 2 || b.rank < 2)
    fail("MatMul", g, `needs rank ≥ 2 operands, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  if (a.dtype !== b.dtype) fail("MatMul", g, `dtypes differ: ${a.dtype} vs ${b.dtype}`);
  const k1 = a.shape[a.rank - 1]!;
  const k2 = b.shape[b.rank - 2]!;
  if (k1 !== k2) fail("MatMul", g, `inner dims differ: ${fmt(a.shape)} @ ${fmt(b.shape)}`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (!batch) fail("MatMul", g, `batch dims of ${fmt(a.shape)} and ${fmt(b.shape)} do not broadcast`);
  const shape = [...batch, a.shape[a.rank - 2]!, b.shape[b.rank - 1]!];
  return g.addNode("MatMul", [a, b], {}, [{ shape, dtype: a.dtype }])[0]!;
}

/** Reshape with at most one -1 (inferred) dim; 0 is a real zero-size dim here, not "copy". */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const g = x.graph;
  const known = shape.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const holes = shape.filter((d) => d === -1).length;
  if (holes > 1 || shape.some((d) => d < -1 || !Number.isInteger(d))) {
    fail("Reshape", g, `bad target shape ${fmt(shape)}`);
  }
  const out = shape.map((d) => (d === -1 ? (known === 0 ? 0 : x.size / known) : d));
  const size = out.reduce((p, d) => p * d, 1);
  if (size !== x.size || out.some((d) => !Number.isInteger(d))) {
    fail("Reshape", g, `cannot reshape ${fmt(x.shape)} (${x.size} elements) to ${fmt(shape)}`);
  }
  const target = g.constant(out, [out.length], "int64");
  return g.addNode("Reshape", [x, target], { allowzero: 1 }, [{ shape: out, dtype: x.dtype }])[0]!;
}

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const g = x.graph;
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) {
    fail("Transpose", g, `perm ${fmt(perm)} is not a permutation of the ${x.rank} axes of ${fmt(x.shape)}`);
  }
  const shape = perm.map((p) => x.shape[p]!);
  return g.addNode("Transpose", [x], { perm: [...perm] }, [{ shape, dtype: x.dtype }])[0]!;
}

function normAxis(op: string, g: Graph, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) fail(op, g, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new GraphError("Concat: needs at least one tensor");
  const g = xs[0]!.graph;
  const first = xs[0]!;
  const ax = normAxis("Concat", g, axis, first.rank);
  let total = 0;
  for (const t of xs) {
    const ok =
      t.rank === first.rank &&
      t.dtype === first.dtype &&
      t.shape.every((d, i) => i === ax || d === first.shape[i]);
    if (!ok) {
      fail(
        "Concat",
        g,
        `shapes ${xs.map((s) => `${s.dtype}${fmt(s.shape)}`).join(", ")} differ off axis ${ax}`,
      );
    }
    total += t.shape[ax]!;
  }
  const shape = first.shape.map((d, i) => (i === ax ? total : d));
  return g.addNode("Concat", xs, { axis: ax }, [{ shape, dtype: first.dtype }])[0]!;
}

/** Slices `x` along `axes` from `starts` to `ends` (exclusive, clamped; negatives count from the end), step 1 or more. */
export function slice(
  x: Tensor,
  starts: readonly number[],
  ends: readonly number[],
  axes?: readonly number[],
  steps?: readonly number[],
): Tensor {
  const g = x.graph;
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis("Slice", g, a, x.rank));
  const st = steps ?? ax.map(() => 1);
  if (starts.length !== ax.length || ends.length !== ax.length || st.length !== ax.length) {
    fail("Slice", g, "starts, ends, axes and steps must have the same length");
  }
  const shape = [...x.shape];
  const normStarts: number[] = [];
  const normEnds: number[] = [];
  ax.forEach((a, i) => {
    const dim = x.shape[a]!;
    if (st[i]! < 1) fail("Slice", g, `only positive steps are supported, got ${st[i]}`);
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
    const s = clamp(starts[i]!);
    const e = clamp(ends[i]!);
    normStarts.push(s);
    normEnds.push(e);
    shape[a] = Math.max(0, Math.ceil((e - s) / st[i]!));
  });
  const c = (v: readonly number[]) => g.constant(v, [v.length], "int64");
  return g.addNode("Slice", [x, c(normStarts), c(normEnds), c(ax), c(st)], {}, [
    { shape, dtype: x.dtype },
  ])[0]!;
}

/** Gathers along `axis` with int64 indices (any shape): out shape = x[:axis] + indices + x[axis+1:]. */
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
  const g = x.graph;
  if (indices.dtype !== "int64" && indices.dtype !== "int32") {
    fail("Gather", g, `indices must be int64 or int32, got ${indices.dtype}`);
  }
  const a = normAxis("Gather", g, axis, x.rank);
  const shape = [...x.shape.slice(0, a), ...indices.shape, ...x.shape.slice(a + 1)];
  return g.addNode("Gather", [x, indices], { axis: a }, [{ shape, dtype: x.dtype }])[0]!;
}

/**
 * ONNX Pad in constant mode: `pads` holds 2×rank non-negative counts in ONNX order (every axis's before, then
 * every axis's after), filled with `value`. One node whose output is computed per run, unlike zeros built as a
 * constant and concatenated (a constant subgraph that constant folding turns into a stored literal).
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  const g = x.graph;
  if (pads.length !== 2 * x.rank || pads.some((p) => !Number.isInteger(p) || p < 0)) {
    fail("Pad", g, `pads ${fmt(pads)} must hold 2×${x.rank} non-negative integers (ONNX order)`);
  }
  if (!isFloat(x.dtype)) fail("Pad", g, `pads floating-point tensors only, got ${x.dtype}`);
  const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + x.rank]!);
  const counts = g.constant(pads, [pads.length], "int64");
  const fill = g.constant(value, [], x.dtype);
  return g.addNode("Pad", [x, counts, fill], { mode: "constant" }, [{ shape, dtype: x.dtype }])[0]!;
}

/** Broadcasts `x` to `shape` (numpy rules). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const g = x.graph;
  const out = broadcastShapes(x.shape, shape);
  if (!out || out.length !== shape.length || out.some((d, i) => d !== shape[i])) {
    fail("Expand", g, `cannot broadcast ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  const target = g.constant(shape, [shape.length], "int64");
  return g.addNode("Expand", [x, target], {}, [{ shape: out, dtype: x.dtype }])[0]!;
}

function reduce(op: string, x: Tensor, axes: readonly number[] | undefined, keepdims: boolean): Tensor {
  const g = x.graph;
  const ax = [...new Set((axes ?? x.shape.map((_, i) => i)).map((a) => normAxis(op, g, a, x.rank)))].sort(
    (p, q) => p - q,
  );
  const shape = keepdims
    ? x.shape.map((d, i) => (ax.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !ax.includes(i));
  const axesT = g.constant(ax, [ax.length], "int64");
  return g.addNode(op, [x, axesT], { keepdims: keepdims ? 1 : 0 }, [{ shape, dtype: x.dtype }])[0]!;
}

/** Sum over `axes` (all axes when omitted). */
export const reduceSum = (x: Tensor, axes?: readonly number[], keepdims = false) =>
  reduce("ReduceSum", x, axes, keepdims);
export const reduceMean = (x: Tensor, axes?: readonly number[], keepdims = false) =>
  reduce("ReduceMean", x, axes, keepdims);
export const reduceMax = (x: Tensor, axes?: readonly number[], keepdims = false) =>
  reduce("ReduceMax", x, axes, keepdims);

const ONNX_DTYPE_CODES: Readonly<Record<DType, number>> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
};

/** ONNX TensorProto.DataType code of a dtype. */
export function onnxDtypeCode(dtype: DType): number {
  return ONNX_DTYPE_CODES[dtype];
}

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return x.graph.addNode("Cast", [x], { to: onnxDtypeCode(dtype) }, [{ shape: x.shape, dtype }])[0]!;
}

/** Softmax along one axis (the last by default). */
export function softmax(x: Tensor, axis = -1): Tensor {
  const g = x.graph;
  if (!isFloat(x.dtype)) fail("Softmax", g, `needs a floating-point input, got ${x.dtype}`);
  const a = normAxis("Softmax", g, axis, x.rank);
  return g.addNode("Softmax", [x], { axis: a }, [{ shape: x.shape, dtype: x.dtype }])[0]!;
}

/** The three outputs of `layerNormalization`. */
export interface LayerNormalizationOutputs {
  /** (x − mean)·invStdDev·scale + bias. */
  y: Tensor;
  /** Mean over the normalized axes, shaped like x with those axes set to 1. */
  mean: Tensor;
  /** 1/√(variance + epsilon) (biased variance), shaped like `mean`. */
  invStdDev: Tensor;
}

/**
 * ONNX LayerNormalization (opset 17) over the axes from `axis` to the last. `scale` and `bias` have exactly
 * the normalized shape. The node also outputs the mean and 1/σ, so the backward pass reads them instead of
 * recomputing the statistics. float32 and float64 only (onnxruntime's CPU provider runs float32).
 */
export function layerNormalization(
  x: Tensor,
  scale: Tensor,
  bias?: Tensor,
  options: { axis?: number; epsilon?: number } = {},
): LayerNormalizationOutputs {
  const g = x.graph;
  if (x.dtype !== "float32" && x.dtype !== "float64") {
    fail("LayerNormalization", g, `needs a float32 or float64 input, got ${x.dtype}`);
  }
  const axis = normAxis("LayerNormalization", g, options.axis ?? -1, x.rank);
  const normalized = x.shape.slice(axis);
  for (const t of bias ? [scale, bias] : [scale]) {
    if (t.dtype !== x.dtype || t.rank !== normalized.length || t.shape.some((d, i) => d !== normalized[i])) {
      fail(
        "LayerNormalization",
        g,
        `scale and bias must be ${x.dtype} ${fmt(normalized)} (the normalized axes of ${fmt(x.shape)}), got ${t.dtype} ${fmt(t.shape)}`,
      );
    }
  }
  const stats = x.shape.map((d, i) => (i < axis ? d : 1));
  const [y, mean, invStdDev] = g.addNode(
    "LayerNormalization",
    bias ? [x, scale, bias] : [x, scale],
    { axis, epsilon: options.epsilon ?? 1e-5 },
    [
      { shape: x.shape, dtype: x.dtype },
      { shape: stats, dtype: x.dtype },
      { shape: stats, dtype: x.dtype },
    ],
  ) as [Tensor, Tensor, Tensor];
  return { y, mean, invStdDev };
}

/** Spatial padding as one number, [height, width] (both sides), or [top, left, bottom, right] (ONNX order). */
export type Padding2d = number | readonly [number, number] | readonly [number, number, number, number];

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: Padding2d;
  dilation?: number | readonly [number, number];
  groups?: number;
}

const pair = (v: number | readonly [number, number] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === "number" ? [v, v] : [v[0], v[1]];

function pads4(p: Padding2d | undefined): [number, number, number, number] {
  if (p === undefined) return [0, 0, 0, 0];
  if (typeof p === "number") return [p, p, p, p];
  if (p.length === 2) return [p[0], p[1], p[0], p[1]];
  return [p[0], p[1], p[2], p[3]];
}

function checkConvOperands(
  op: string,
  x: Tensor,
  w: Tensor,
  bias: Tensor | undefined,
  groups: number,
  outChannels: number,
) {
  const g = x.graph;
  if (x.rank !== 4 || w.rank !== 4)
    fail(op, g, `needs NCHW input and 4-D weight, got ${fmt(x.shape)} and ${fmt(w.shape)}`);
  if (x.dtype !== w.dtype || !isFloat(x.dtype))
    fail(op, g, `input and weight must share a float dtype, got ${x.dtype} and ${w.dtype}`);
  if (!Number.isInteger(groups) || groups < 1)
    fail(op, g, `groups must be a positive integer, got ${groups}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outChannels || bias.dtype !== x.dtype)) {
    fail(op, g, `bias must be ${x.dtype} [${outChannels}], got ${bias.dtype} ${fmt(bias.shape)}`);
  }
}

/**
 * 2-D convolution (ONNX Conv), NCHW. `w` is [out, in/groups, kH, kW] as PyTorch stores it; `bias` is [out].
 */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, options: Conv2dOptions = {}): Tensor {
  const g = x.graph;
  const groups = options.groups ?? 1;
  checkConvOperands("Conv", x, w, bias, groups, w.shape[0]!);
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [o, ci, kh, kw] = w.shape as [number, number, number, number];
  if (c !== ci * groups || o % groups !== 0) {
    fail("Conv", g, `input ${fmt(x.shape)} and weight ${fmt(w.shape)} disagree for groups=${groups}`);
  }
  const strides = pair(options.stride, 1);
  const dil = pair(options.dilation, 1);
  const pads = pads4(options.padding);
  const oh = Math.floor((h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) / strides[0]) + 1;
  const ow = Math.floor((wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) / strides[1]) + 1;
  if (oh < 1 || ow < 1 || [...strides, ...dil].some((s) => s < 1) || pads.some((p) => p < 0)) {
    fail("Conv", g, `kernel ${kh}x${kw} does not fit input ${fmt(x.shape)} with these options`);
  }
  const attrs = { kernel_shape: [kh, kw], strides, dilations: dil, pads, group: groups };
  return g.addNode("Conv", bias ? [x, w, bias] : [x, w], attrs, [
    { shape: [n, o, oh, ow], dtype: x.dtype },
  ])[0]!;
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  /** Extra rows/columns added at the bottom/right of the output (resolves the stride ambiguity). */
  outputPadding?: number | readonly [number, number];
}

/**
 * 2-D transposed convolution (ONNX ConvTranspose), NCHW: the vector-Jacobian product of `conv2d` with
 * respect to its input. `w` is [in, out/groups, kH, kW] as PyTorch stores it; `bias` is [out].
 */
export function convTranspose2d(
  x: Tensor,
  w: Tensor,
  bias?: Tensor,
  options: ConvTranspose2dOptions = {},
): Tensor {
  const g = x.graph;
  const groups = options.groups ?? 1;
  checkConvOperands("ConvTranspose", x, w, bias, groups, w.shape[1]! * groups);
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [ci, og, kh, kw] = w.shape as [number, number, number, number];
  if (c !== ci || c % groups !== 0) {
    fail(
      "ConvTranspose",
      g,
      `input ${fmt(x.shape)} and weight ${fmt(w.shape)} disagree for groups=${groups}`,
    );
  }
  const strides = pair(options.stride, 1);
  const dil = pair(options.dilation, 1);
  const pads = pads4(options.padding);
  const outPad = pair(options.outputPadding, 0);
  const oh = strides[0] * (h - 1) + outPad[0] + dil[0] * (kh - 1) + 1 - pads[0] - pads[2];
  const ow = strides[1] * (wd - 1) + outPad[1] + dil[1] * (kw - 1) + 1 - pads[1] - pads[3];
  if (
    oh < 1 ||
    ow < 1 ||
    outPad[0] >= Math.max(strides[0], dil[0]) ||
    outPad[1] >= Math.max(strides[1], dil[1])
  ) {
    fail("ConvTranspose", g, `options give an invalid output size ${oh}x${ow} for input ${fmt(x.shape)}`);
  }
  const attrs = {
    kernel_shape: [kh, kw],
    strides,
    dilations: dil,
    pads,
    group: groups,
    output_padding: outPad,
  };
  return g.addNode("ConvTranspose", bias ? [x, w, bias] : [x, w], attrs, [
    { shape: [n, og * groups, oh, ow], dtype: x.dtype },
  ])[0]!;
}
