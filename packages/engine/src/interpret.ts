import { closeSync, openSync, readSync } from "node:fs";
import { DTYPE_BYTES, type DType, numel } from "./dtype.js";
import { EditR1Error } from "./errors.js";
import type { Graph, InitializerData, Node, Shape, Tensor } from "./graph.js";

/**
 * The reference interpreter: evaluates any graph of primitive ops in plain TypeScript, in float64.
 *
 * It is the engine's ground truth (slow, obvious loops, exact ONNX opset-21 semantics), used to check the
 * onnxruntime path and, through central finite differences, every vector-Jacobian rule. Every value is a
 * row-major `Float64Array`: integers are exact up to 2^53, booleans are 0/1. Floating-point dtypes are all
 * computed in float64, so a Cast between float dtypes keeps full precision (it does not round to float32/16).
 */

/** A run-time value for a graph input: any array of numbers (or bigints for int64), row-major. */
export type FeedValue = ArrayLike<number> | BigInt64Array;

/** Evaluation failed: a missing or mis-sized feed, an unsupported op or dtype, or inconsistent node data. */
export class InterpretError extends EditR1Error {
  override name = "InterpretError";
}

/**
 * Evaluates `outputs` of `graph` given a value for every graph input that they depend on (by input name).
 * Only the nodes the outputs need are run. Returns one row-major Float64Array per output, in order.
 */
export function evaluate(
  graph: Graph,
  feeds: Readonly<Record<string, FeedValue>>,
  outputs: readonly Tensor[],
): Float64Array[] {
  const values = new Map<number, Float64Array>();
  const needed = new Set<number>();
  const stack: Tensor[] = [];
  for (const t of outputs) {
    if (t.graph !== graph) throw new InterpretError(`evaluate: output ${t} belongs to another graph`);
    stack.push(t);
  }
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (t.source.kind !== "node") {
      if (!values.has(t.id)) values.set(t.id, leafValue(t, feeds));
      continue;
    }
    const node = t.source.node;
    if (needed.has(node.id)) continue;
    needed.add(node.id);
    for (const i of node.inputs) stack.push(i);
  }
  for (const node of graph.nodes) {
    if (!needed.has(node.id)) continue;
    const ins = node.inputs.map((t) => values.get(t.id)!);
    let outs: Float64Array[];
    try {
      outs = runNode(node, ins);
    } catch (e) {
      if (e instanceof InterpretError) {
        const where = node.scope ? ` at "${node.scope}"` : "";
        throw new InterpretError(`${node.op}#${node.id}${where}: ${e.message}`);
      }
      throw e;
    }
    node.outputs.forEach((t, i) => {
      if (outs[i]!.length !== t.size) {
        throw new InterpretError(
          `${node.op}#${node.id}: produced ${outs[i]!.length} values for ${t} (interpreter bug)`,
        );
      }
      values.set(t.id, outs[i]!);
    });
  }
  return outputs.map((t) => values.get(t.id)!);
}

function leafValue(t: Tensor, feeds: Readonly<Record<string, FeedValue>>): Float64Array {
  const src = t.source;
  switch (src.kind) {
    case "input": {
      const v = feeds[src.name];
      if (v === undefined) {
        throw new InterpretError(
          `evaluate: no feed for input "${src.name}" (${t.dtype} [${t.shape.join(",")}]); pass it in feeds`,
        );
      }
      if (v.length !== t.size) {
        throw new InterpretError(
          `evaluate: feed "${src.name}" has ${v.length} values but its shape [${t.shape.join(",")}] needs ${t.size}`,
        );
      }
      return Float64Array.from(v as ArrayLike<number>, Number);
    }
    case "initializer":
      return decodeInitializer(src.name, t.dtype, t.shape, src.data);
    case "constant":
      return decodeTyped(src.data, t.dtype);
    default:
      throw new InterpretError(`tensor ${t} has no value`);
  }
}

function decodeTyped(
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array,
  dtype: DType,
): Float64Array {
  if (data instanceof Uint16Array) {
    if (dtype === "float16") return Float64Array.from(data, halfToNumber);
    if (dtype === "bfloat16") return Float64Array.from(data, (b) => bf16ToNumber(b));
  }
  return Float64Array.from(data as ArrayLike<number>, Number);
}

function decodeInitializer(name: string, dtype: DType, shape: Shape, data: InitializerData): Float64Array {
  if (!("path" in data)) return decodeTyped(data, dtype);
  const expected = numel(shape) * DTYPE_BYTES[dtype];
  if (data.length !== expected) {
    throw new InterpretError(
      `initializer "${name}": external data is ${data.length} bytes but ${dtype} [${shape.join(",")}] needs ${expected}`,
    );
  }
  const bytes = new Uint8Array(expected);
  let fd: number;
  try {
    fd = openSync(data.path, "r");
  } catch (e) {
    throw new InterpretError(
      `initializer "${name}": cannot open external data file ${data.path}: ${(e as Error).message}`,
    );
  }
  try {
    let done = 0;
    while (done < expected) {
      const n = readSync(fd, bytes, done, expected - done, data.offset + done);
      if (n === 0) {
        throw new InterpretError(
          `initializer "${name}": ${data.path} ends before byte ${data.offset + expected} (offset ${data.offset}, length ${expected}); the file is truncated or the offset is wrong`,
        );
      }
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  const view = new DataView(bytes.buffer);
  const n = numel(shape);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case "float32":
        out[i] = view.getFloat32(i * 4, true);
        break;
      case "float64":
        out[i] = view.getFloat64(i * 8, true);
        break;
      case "float16":
        out[i] = halfToNumber(view.getUint16(i * 2, true));
        break;
      case "bfloat16":
        out[i] = bf16ToNumber(view.getUint16(i * 2, true));
        break;
      case "int64":
        out[i] = Number(view.getBigInt64(i * 8, true));
        break;
      case "int32":
        out[i] = view.getInt32(i * 4, true);
        break;
      case "uint8":
      case "bool":
        out[i] = bytes[i]!;
        break;
    }
  }
  return out;
}

function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const bf16Scratch = new DataView(new ArrayBuffer(4));
function bf16ToNumber(b: number): number {
  bf16Scratch.setUint32(0, b << 16);
  return bf16Scratch.getFloat32(0);
}

/** erf to ~1e-15 relative: a positive-term series below 3 (no cancellation), a continued fraction for erfc above. */
export function erfValue(x: number): number {
  if (Number.isNaN(x)) return x;
  const ax = Math.abs(x);
  let r: number;
  if (ax < 3) {
    // erf(x) = 2/√π · e^{-x²} · Σ (2x²)^n x / (1·3·…·(2n+1))
    const x2 = ax * ax;
    let term = ax;
    let sum = ax;
    for (let n = 1; term > sum * 1e-17; n++) {
      term *= (2 * x2) / (2 * n + 1);
      sum += term;
    }
    r = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  } else if (ax < 7) {
    // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated from a deep tail.
    let t = ax;
    for (let n = 80; n >= 1; n--) t = ax + n / 2 / t;
    r = 1 - Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * t);
  } else {
    r = 1;
  }
  return x < 0 ? -r : r;
}

// ---------------------------------------------------------------------------------------------------------
// Index helpers. Every layout operation is "output element i reads input element off[i]".

function rowStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Offsets visited by walking `shape` in row-major order with the given per-dim strides from `base`. */
function stridedOffsets(shape: Shape, strides: readonly number[], base = 0): Float64Array {
  const n = numel(shape);
  const out = new Float64Array(n);
  if (n === 0) return out;
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let cur = base;
  for (let i = 0; i < n; i++) {
    out[i] = cur;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      cur += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      cur -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** For each element of `outShape`, the offset of the element of `inShape` that numpy broadcasting reads. */
function broadcastOffsets(inShape: Shape, outShape: Shape): Float64Array {
  const inStr = rowStrides(inShape);
  const lead = outShape.length - inShape.length;
  if (lead < 0) throw new InterpretError(`cannot broadcast [${inShape}] to [${outShape}]`);
  const str = outShape.map((d, i) => {
    if (i < lead) return 0;
    const di = inShape[i - lead]!;
    if (di === d) return di === 1 ? 0 : inStr[i - lead]!;
    if (di === 1) return 0;
    throw new InterpretError(`cannot broadcast [${inShape}] to [${outShape}]`);
  });
  return stridedOffsets(outShape, str);
}

function gatherBy(x: Float64Array, off: Float64Array): Float64Array {
  const out = new Float64Array(off.length);
  for (let i = 0; i < off.length; i++) out[i] = x[off[i]!]!;
  return out;
}

/** Reads an int tensor input (axes, shape, starts, …) as plain numbers. */
const ints = (v: Float64Array): number[] => Array.from(v);

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new InterpretError(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

const isIntDtype = (d: DType) => d === "int64" || d === "int32" || d === "uint8";

// ---------------------------------------------------------------------------------------------------------

const UNARY: Readonly<Record<string, (x: number) => number>> = {
  Neg: (x) => -x,
  Exp: Math.exp,
  Log: Math.log,
  Sqrt: Math.sqrt,
  Reciprocal: (x) => 1 / x,
  Tanh: Math.tanh,
  Erf: erfValue,
  Sigmoid: (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
  Abs: Math.abs,
  Sin: Math.sin,
  Cos: Math.cos,
  Relu: (x) => Math.max(x, 0),
  Identity: (x) => x,
};

const BINARY: Readonly<Record<string, (a: number, b: number) => number>> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: Math.pow,
  Max: Math.max,
  Min: Math.min,
  Greater: (a, b) => (a > b ? 1 : 0),
  Less: (a, b) => (a < b ? 1 : 0),
  Equal: (a, b) => (a === b ? 1 : 0),
};

/** ONNX TensorProto.DataType codes accepted by Cast, with how a float64 value converts into each. */
const CAST_TO: Readonly<Record<number, (x: number) => number>> = {
  1: (x) => x, // float32: kept in float64 (see the module comment)
  10: (x) => x, // float16
  16: (x) => x, // bfloat16
  11: (x) => x, // float64
  6: (x) => (Number.isFinite(x) ? Math.trunc(x) | 0 : x), // int32 wraps like a C cast
  7: (x) => Math.trunc(x), // int64
  2: (x) => wrapUint8(Math.trunc(x)), // uint8
  9: (x) => (x !== 0 ? 1 : 0), // bool: NaN is true, as in C
};

function wrapUint8(x: number): number {
  return Number.isFinite(x) ? ((x % 256) + 256) % 256 : x;
}

function runNode(node: Node, ins: Float64Array[]): Float64Array[] {
  const op = node.op;
  const out0 = node.outputs[0]!;
  const unary = UNARY[op];
  if (unary) {
    const x = ins[0]!;
    const y = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = unary(x[i]!);
    return [y];
  }
  const binary = BINARY[op];
  if (binary) {
    const [a, b] = node.inputs;
    const oa = broadcastOffsets(a!.shape, out0.shape);
    const ob = broadcastOffsets(b!.shape, out0.shape);
    const x = ins[0]!;
    const z = ins[1]!;
    const y = new Float64Array(out0.size);
    // Integer division truncates toward zero, as onnxruntime's C++ kernels do.
    const intDiv = op === "Div" && isIntDtype(out0.dtype);
    for (let i = 0; i < y.length; i++) {
      const v = binary(x[oa[i]!]!, z[ob[i]!]!);
      y[i] = intDiv ? Math.trunc(v) : v;
    }
    return [y];
  }
  switch (op) {
    case "Where": {
      const [c, a, b] = node.inputs;
      const oc = broadcastOffsets(c!.shape, out0.shape);
      const oa = broadcastOffsets(a!.shape, out0.shape);
      const ob = broadcastOffsets(b!.shape, out0.shape);
      const y = new Float64Array(out0.size);
      for (let i = 0; i < y.length; i++) y[i] = ins[0]![oc[i]!] ? ins[1]![oa[i]!]! : ins[2]![ob[i]!]!;
      return [y];
    }
    case "MatMul":
      return [matmulValue(node.inputs[0]!.shape, ins[0]!, node.inputs[1]!.shape, ins[1]!, out0.shape)];
    case "Reshape": {
      const x = node.inputs[0]!;
      const target = ints(ins[1]!);
      const allowzero = node.attrs.allowzero === 1;
      const shape = target.map((d, i) => (d === 0 && !allowzero ? x.shape[i]! : d));
      const hole = shape.indexOf(-1);
      if (hole >= 0) {
        const known = shape.reduce((p, d) => (d === -1 ? p : p * d), 1);
        shape[hole] = known === 0 ? 0 : x.size / known;
      }
      checkShape("Reshape", shape, out0.shape);
      return [ins[0]!.slice()];
    }
    case "Expand": {
      const x = node.inputs[0]!;
      const target = ints(ins[1]!);
      const rank = Math.max(x.rank, target.length);
      const shape: number[] = [];
      for (let i = 0; i < rank; i++) {
        const dx = x.shape[x.rank - rank + i] ?? 1;
        const dt = target[target.length - rank + i] ?? 1;
        if (dx !== dt && dx !== 1 && dt !== 1)
          throw new InterpretError(`cannot expand [${x.shape}] to [${target}]`);
        shape.push(dx === 1 ? dt : dx);
      }
      checkShape("Expand", shape, out0.shape);
      return [gatherBy(ins[0]!, broadcastOffsets(x.shape, out0.shape))];
    }
    case "Transpose": {
      const x = node.inputs[0]!;
      const perm =
        (node.attrs.perm as readonly number[] | undefined) ?? x.shape.map((_, i) => x.rank - 1 - i);
      const str = rowStrides(x.shape);
      return [
        gatherBy(
          ins[0]!,
          stridedOffsets(
            out0.shape,
            perm.map((p) => str[p]!),
          ),
        ),
      ];
    }
    case "Concat": {
      const axis = normAxis(node.attrs.axis as number, out0.rank);
      const outer = numel(out0.shape.slice(0, axis));
      const inner = numel(out0.shape.slice(axis + 1));
      const y = new Float64Array(out0.size);
      const rowOut = out0.shape[axis]! * inner;
      let at = 0;
      node.inputs.forEach((t, k) => {
        const chunk = t.shape[axis]! * inner;
        const v = ins[k]!;
        for (let o = 0; o < outer; o++) y.set(v.subarray(o * chunk, (o + 1) * chunk), o * rowOut + at);
        at += chunk;
      });
      return [y];
    }
    case "Slice":
      return [sliceValue(node, ins)];
    case "Pad":
      return [padValue(node, ins)];
    case "Gather": {
      const x = node.inputs[0]!;
      const axis = normAxis(node.attrs.axis as number, x.rank);
      const outer = numel(x.shape.slice(0, axis));
      const inner = numel(x.shape.slice(axis + 1));
      const dim = x.shape[axis]!;
      const idx = ins[1]!;
      const y = new Float64Array(out0.size);
      let w = 0;
      for (let o = 0; o < outer; o++) {
        for (let k = 0; k < idx.length; k++) {
          let j = idx[k]!;
          if (j < -dim || j >= dim)
            throw new InterpretError(`index ${j} out of range for axis of size ${dim}`);
          if (j < 0) j += dim;
          const base = (o * dim + j) * inner;
          for (let q = 0; q < inner; q++) y[w++] = ins[0]![base + q]!;
        }
      }
      return [y];
    }
    case "ReduceSum":
    case "ReduceMean":
    case "ReduceMax":
      return [reduceValue(node, ins)];
    case "Cast": {
      const to = node.attrs.to as number;
      const conv = CAST_TO[to];
      if (!conv) throw new InterpretError(`Cast to ONNX dtype code ${to} is not supported`);
      return [Float64Array.from(ins[0]!, conv)];
    }
    case "Softmax":
      return [softmaxValue(node, ins[0]!)];
    case "Gelu": {
      const tanh = node.attrs.approximate === "tanh";
      const k = Math.sqrt(2 / Math.PI);
      return [
        Float64Array.from(ins[0]!, (v) =>
          tanh
            ? 0.5 * v * (1 + Math.tanh(k * (v + 0.044715 * v * v * v)))
            : 0.5 * v * (1 + erfValue(v / Math.SQRT2)),
        ),
      ];
    }
    case "LayerNormalization":
      return layerNormValue(node, ins);
    case "Conv":
    case "ConvTranspose":
      return [convValue(node, ins)];
    default:
      throw new InterpretError(
        `op ${op} is not supported by the interpreter; add it to interpret.ts (and a VJP rule to autodiff.ts)`,
      );
  }
}

/** LayerNormalization: per row of the trailing normalized block, biased variance; outputs y, mean, 1/σ. */
function layerNormValue(node: Node, ins: Float64Array[]): Float64Array[] {
  const x = node.inputs[0]!;
  const axis = normAxis(node.attrs.axis as number, x.rank);
  const eps = node.attrs.epsilon as number;
  const n = numel(x.shape.slice(axis));
  const rows = n === 0 ? 0 : x.size / n;
  const [xv, scale, bias] = ins as [Float64Array, Float64Array, Float64Array | undefined];
  const y = new Float64Array(x.size);
  const mean = new Float64Array(rows);
  const inv = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    let m = 0;
    for (let i = 0; i < n; i++) m += xv[base + i]!;
    m /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (xv[base + i]! - m) ** 2;
    const s = 1 / Math.sqrt(v / n + eps);
    for (let i = 0; i < n; i++) y[base + i] = (xv[base + i]! - m) * s * scale[i]! + (bias ? bias[i]! : 0);
    mean[r] = m;
    inv[r] = s;
  }
  return [y, mean, inv];
}

function checkShape(op: string, computed: readonly number[], declared: Shape): void {
  if (computed.length !== declared.length || computed.some((d, i) => d !== declared[i])) {
    throw new InterpretError(
      `${op} data gives shape [${computed.join(",")}] but the graph declares [${declared.join(",")}]`,
    );
  }
}

function matmulValue(as: Shape, a: Float64Array, bs: Shape, b: Float64Array, outShape: Shape): Float64Array {
  const m = as[as.length - 2]!;
  const k = as[as.length - 1]!;
  const n = bs[bs.length - 1]!;
  const batchShape = outShape.slice(0, -2);
  const aBatch = broadcastOffsets(as.slice(0, -2), batchShape);
  const bBatch = broadcastOffsets(bs.slice(0, -2), batchShape);
  const y = new Float64Array(numel(outShape));
  for (let p = 0; p < aBatch.length; p++) {
    const ao = aBatch[p]! * m * k;
    const bo = bBatch[p]! * k * n;
    const yo = p * m * n;
    for (let i = 0; i < m; i++) {
      for (let l = 0; l < k; l++) {
        const av = a[ao + i * k + l]!;
        const brow = bo + l * n;
        const yrow = yo + i * n;
        for (let j = 0; j < n; j++) y[yrow + j]! += av * b[brow + j]!;
      }
    }
  }
  return y;
}

function sliceValue(node: Node, ins: Float64Array[]): Float64Array {
  const x = node.inputs[0]!;
  const starts = ints(ins[1]!);
  const ends = ints(ins[2]!);
  const axes = ins[3] ? ints(ins[3]).map((a) => normAxis(a, x.rank)) : starts.map((_, i) => i);
  const steps = ins[4] ? ints(ins[4]) : starts.map(() => 1);
  const str = rowStrides(x.shape);
  const shape = [...x.shape];
  const outStr = [...str];
  let base = 0;
  axes.forEach((a, i) => {
    const dim = x.shape[a]!;
    const step = steps[i]!;
    if (step === 0) throw new InterpretError("Slice step 0 is invalid");
    let s = starts[i]! < 0 ? starts[i]! + dim : starts[i]!;
    let e = ends[i]! < 0 ? ends[i]! + dim : ends[i]!;
    if (step > 0) {
      s = Math.min(Math.max(s, 0), dim);
      e = Math.min(Math.max(e, 0), dim);
      shape[a] = Math.max(0, Math.ceil((e - s) / step));
    } else {
      s = Math.min(Math.max(s, 0), dim - 1);
      e = Math.min(Math.max(e, -1), dim - 1);
      shape[a] = Math.max(0, Math.ceil((s - e) / -step));
    }
    base += s * str[a]!;
    outStr[a] = str[a]! * step;
  });
  checkShape("Slice", shape, node.outputs[0]!.shape);
  return gatherBy(ins[0]!, stridedOffsets(shape, outStr, base));
}

function reduceValue(node: Node, ins: Float64Array[]): Float64Array {
  const x = node.inputs[0]!;
  const raw = ins[1] ? ints(ins[1]) : [];
  const noop = node.attrs.noop_with_empty_axes === 1;
  if (raw.length === 0 && noop) return ins[0]!.slice();
  const axes = raw.length === 0 ? x.shape.map((_, i) => i) : raw.map((a) => normAxis(a, x.rank));
  const keepShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  // Map each input element to its reduced slot by broadcasting the kept shape over the input's shape.
  const slot = broadcastOffsets(keepShape, x.shape);
  const size = numel(keepShape);
  const isMax = node.op === "ReduceMax";
  const acc = new Float64Array(size).fill(isMax ? Number.NEGATIVE_INFINITY : 0);
  const v = ins[0]!;
  for (let i = 0; i < v.length; i++) {
    const s = slot[i]!;
    if (isMax) acc[s] = BINARY.Max!(acc[s]!, v[i]!);
    else acc[s]! += v[i]!;
  }
  if (node.op === "ReduceMean") {
    const count = x.size / size;
    for (let i = 0; i < size; i++) acc[i]! /= count;
  }
  return acc;
}

function softmaxValue(node: Node, x: Float64Array): Float64Array {
  const t = node.inputs[0]!;
  const axis = normAxis((node.attrs.axis as number | undefined) ?? -1, t.rank);
  const outer = numel(t.shape.slice(0, axis));
  const n = t.shape[axis]!;
  const inner = numel(t.shape.slice(axis + 1));
  const y = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let q = 0; q < inner; q++) {
      const base = o * n * inner + q;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < n; j++) max = Math.max(max, x[base + j * inner]!);
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp(x[base + j * inner]! - max);
        y[base + j * inner] = e;
        sum += e;
      }
      for (let j = 0; j < n; j++) y[base + j * inner]! /= sum;
    }
  }
  return y;
}

/**
 * Conv and ConvTranspose (NCHW, 2-D). Both walk the same (input pixel, kernel tap) → output pixel map:
 * Conv gathers y[oi] += x[oi·s − pad + k·d]·w, ConvTranspose scatters y[i·s − pad + k·d] += x[i]·w.
 */
function convValue(node: Node, ins: Float64Array[]): Float64Array {
  const transposed = node.op === "ConvTranspose";
  const [xt, wt] = node.inputs as [Tensor, Tensor];
  const out = node.outputs[0]!;
  if (xt.rank !== 4) throw new InterpretError(`${node.op}: only 2-D (NCHW) is supported, got [${xt.shape}]`);
  const [n, c, h, wd] = xt.shape as [number, number, number, number];
  const [, , oh, ow] = out.shape as [number, number, number, number];
  const oc = out.shape[1]!;
  const [kh, kw] = [wt.shape[2]!, wt.shape[3]!];
  const attr = (k: string, d: number[]) => (node.attrs[k] as readonly number[] | undefined) ?? d;
  const [sh, sw] = attr("strides", [1, 1]);
  const [dh, dw] = attr("dilations", [1, 1]);
  const [pt, pl] = attr("pads", [0, 0, 0, 0]);
  const groups = (node.attrs.group as number | undefined) ?? 1;
  const cpg = c / groups;
  const opg = oc / groups;
  const x = ins[0]!;
  const w = ins[1]!;
  const bias = ins[2];
  const y = new Float64Array(out.size);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < oc; o++) {
      const base = (b * oc + o) * oh * ow;
      if (bias) for (let i = 0; i < oh * ow; i++) y[base + i] = bias[o]!;
    }
  }
  // Iterate over (conv output pixel or convT input pixel) p, channel pair and tap; `a` is the other side.
  const [ph, pw] = transposed ? [h, wd] : [oh, ow];
  const [ah, aw] = transposed ? [oh, ow] : [h, wd];
  for (let b = 0; b < n; b++) {
    for (let gi = 0; gi < groups; gi++) {
      for (let co = 0; co < opg; co++) {
        const o = gi * opg + co;
        for (let ci = 0; ci < cpg; ci++) {
          const cin = gi * cpg + ci;
          // Conv weight is [out, in/groups, kh, kw]; ConvTranspose weight is [in, out/groups, kh, kw].
          const wBase = transposed ? (cin * opg + co) * kh * kw : (o * cpg + ci) * kh * kw;
          const xBase = (b * c + cin) * h * wd;
          const yBase = (b * oc + o) * oh * ow;
          for (let pi = 0; pi < ph; pi++) {
            for (let pj = 0; pj < pw; pj++) {
              for (let ki = 0; ki < kh; ki++) {
                const ai = pi * sh - pt + ki * dh;
                if (ai < 0 || ai >= ah) continue;
                for (let kj = 0; kj < kw; kj++) {
                  const aj = pj * sw - pl + kj * dw;
                  if (aj < 0 || aj >= aw) continue;
                  const wv = w[wBase + ki * kw + kj]!;
                  if (transposed) y[yBase + ai * ow + aj]! += x[xBase + pi * wd + pj]! * wv;
                  else y[yBase + pi * ow + pj]! += x[xBase + ai * wd + aj]! * wv;
                }
              }
            }
          }
        }
      }
    }
  }
  return y;
}

/** ONNX Pad, constant mode, non-negative pads over every axis (pads input: befores, then afters). */
function padValue(node: Node, ins: readonly Float64Array[]): Float64Array {
  const mode = (node.attrs.mode as string | undefined) ?? "constant";
  if (mode !== "constant") throw new InterpretError(`Pad mode "${mode}" is not supported (constant only)`);
  if (node.inputs.length > 3) throw new InterpretError("Pad with an axes input is not supported");
  const x = node.inputs[0]!;
  const out = node.outputs[0]!;
  const pads = ints(ins[1]!);
  if (pads.length !== 2 * x.rank || pads.some((p) => p < 0))
    throw new InterpretError(`pads [${pads}] must hold 2×${x.rank} non-negative counts`);
  const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + x.rank]!);
  checkShape("Pad", shape, out.shape);
  const fill = ins[2] && ins[2].length > 0 ? ins[2][0]! : 0;
  const y = new Float64Array(out.size).fill(fill);
  const outStrides = rowStrides(out.shape);
  const offset = x.shape.reduce((o, _, i) => o + pads[i]! * outStrides[i]!, 0);
  const at = stridedOffsets(x.shape, outStrides);
  const v = ins[0]!;
  for (let i = 0; i < v.length; i++) y[offset + at[i]!] = v[i]!;
  return y;
}
