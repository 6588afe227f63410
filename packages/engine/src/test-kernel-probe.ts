import type { DType } from "./dtype.js";
import { Graph, type Tensor } from "./graph.js";
import { type LoweredModel, lower } from "./lower.js";
import * as ops from "./ops.js";

/**
 * For tests: a one-node model per ONNX op the lowering emits, in a chosen float dtype, built with the engine's
 * own graph and lowering (raw `addNode`, so ops the typed builders restrict, like LayerNormalization to float32,
 * can be probed in every dtype). Opening it in onnxruntime shows whether the provider has that kernel.
 */

type In = readonly [dtype: "T" | DType, shape: readonly number[]] | { int64: readonly number[] };

interface ProbeSpec {
  inputs: readonly In[];
  attrs?: Record<string, number | string | readonly number[]>;
  output: readonly [dtype: "T" | DType, shape: readonly number[]];
}

const T23 = ["T", [2, 3]] as const;
const unary: ProbeSpec = { inputs: [T23], output: T23 };
const binary: ProbeSpec = { inputs: [T23, T23], output: T23 };
const compare: ProbeSpec = { inputs: [T23, T23], output: ["bool", [2, 3]] };
const reduce: ProbeSpec = { inputs: [T23, { int64: [1] }], attrs: { keepdims: 0 }, output: ["T", [2]] };

/** The ops the engine's lowering can emit (ops.ts primitives, Gemm from weight MatMuls), with a probe each. */
export const PROBES: Readonly<Record<string, ProbeSpec>> = {
  Abs: unary,
  Neg: unary,
  Exp: unary,
  Erf: unary,
  Sqrt: unary,
  Tanh: unary,
  Sigmoid: unary,
  Relu: unary,
  Log: unary,
  Reciprocal: unary,
  Sin: unary,
  Cos: unary,
  Identity: unary,
  Gelu: { inputs: [T23], attrs: { approximate: "none" }, output: T23 },
  Add: binary,
  Sub: binary,
  Mul: binary,
  Div: binary,
  Pow: binary,
  Max: binary,
  Min: binary,
  Greater: compare,
  Less: compare,
  Equal: compare,
  MatMul: { inputs: [T23, ["T", [3, 4]]], output: ["T", [2, 4]] },
  Gemm: { inputs: [T23, ["T", [4, 3]], ["T", [4]]], attrs: { transB: 1 }, output: ["T", [2, 4]] },
  Softmax: { inputs: [T23], attrs: { axis: 1 }, output: T23 },
  LayerNormalization: {
    inputs: [T23, ["T", [3]], ["T", [3]]],
    attrs: { axis: 1, epsilon: 1e-5 },
    output: T23,
  },
  ReduceSum: reduce,
  ReduceMean: reduce,
  ReduceMax: reduce,
  Where: { inputs: [["bool", [2, 3]], T23, T23], output: T23 },
  Concat: { inputs: [T23, T23], attrs: { axis: 0 }, output: ["T", [4, 3]] },
  Expand: { inputs: [["T", [1, 3]], { int64: [2, 3] }], output: T23 },
  Gather: { inputs: [T23, { int64: [1, 0] }], attrs: { axis: 0 }, output: T23 },
  Reshape: { inputs: [T23, { int64: [3, 2] }], output: ["T", [3, 2]] },
  Slice: {
    inputs: [T23, { int64: [0] }, { int64: [1] }, { int64: [0] }, { int64: [1] }],
    output: ["T", [1, 3]],
  },
  Transpose: { inputs: [T23], attrs: { perm: [1, 0] }, output: ["T", [3, 2]] },
  // Constant-mode Pad, as ops.pad emits it (the Slice gradient): counts, then the fill value as a T scalar.
  Pad: {
    inputs: [T23, { int64: [0, 1, 0, 1] }, ["T", []]],
    attrs: { mode: "constant" },
    output: ["T", [2, 5]],
  },
  Conv: {
    inputs: [
      ["T", [1, 1, 4, 4]],
      ["T", [1, 1, 3, 3]],
    ],
    attrs: { kernel_shape: [3, 3] },
    output: ["T", [1, 1, 2, 2]],
  },
  ConvTranspose: {
    inputs: [
      ["T", [1, 1, 2, 2]],
      ["T", [1, 1, 3, 3]],
    ],
    attrs: { kernel_shape: [3, 3] },
    output: ["T", [1, 1, 4, 4]],
  },
};

/**
 * The model of `op` computing in `dtype`: float32 graph inputs cast to `dtype` (onnxruntime-node refuses bfloat16
 * graph inputs and outputs), the node, and its output cast back to float32. Operands are graph inputs, so
 * nothing is folded away before the kernel is chosen.
 */
export function probeModel(op: string, dtype: DType): LoweredModel {
  const spec = PROBES[op];
  if (!spec) throw new Error(`no probe for op ${op}`);
  const g = new Graph(`probe_${op}_${dtype}`);
  const inputs: Tensor[] = spec.inputs.map((i, k) => {
    if ("int64" in i) return g.constant(i.int64, [i.int64.length], "int64");
    if (i[0] !== "T") return g.input(`in${k}`, i[0], i[1]);
    return ops.cast(g.input(`in${k}`, "float32", i[1]), dtype);
  });
  const [od, shape] = spec.output;
  const y = g.addNode(op, inputs, spec.attrs ?? {}, [{ shape, dtype: od === "T" ? dtype : od }])[0]!;
  return lower(g, { outputs: { y: od === "T" ? ops.cast(y, "float32") : y } });
}
