import type { DType } from "./dtype.js";

/**
 * Which (op, dtype) kernels each onnxruntime execution provider has, for the ONNX ops the engine's lowering
 * emits, at the opset it emits (21). A node whose kernel is missing does not run where it should: on CUDA a
 * float16 node falls back to the CPU provider (two device copies per node), a bfloat16 node fails the session
 * (the CPU provider has no bfloat16 math either), and on WebGPU the node runs on the CPU. `lower(…, { provider })`
 * keeps such nodes in float32 (Casts around them) where the float32 kernel exists.
 *
 * Sources, per provider:
 * - cuda: onnxruntime's docs/OperatorKernels.md, "Operators implemented by CUDAExecutionProvider" (microsoft/
 *   onnxruntime at commit 001d12d2, the registrations 1.30 ships), the row whose opset range holds 21. Not measured:
 *   no CUDA machine has run it. The bfloat16 gaps agree with those reported in issue 16.
 * - cpu: measured on onnxruntime-node 1.30.0 (Linux x64): a one-node session per (op, dtype) opens or fails with
 *   "Could not find an implementation" (`kernels.test.ts` re-measures every entry, so a wrong entry fails the
 *   suite). float16 nodes open on the CPU provider because onnxruntime inserts float32 Casts itself
 *   (InsertCastTransformer); bfloat16 has no such help.
 * - webgpu: measured on onnxruntime-node 1.30.0 (Linux x64) over Mesa 25.0's software Vulkan (lavapipe): a
 *   one-node session per (op, dtype) opens with CPU fallback disabled or fails (`kernels.test.ts` re-measures the
 *   float32 and float16 entries wherever WebGPU loads, and `webgpu.test.ts` checks their results against the
 *   CPU). Every op the lowering emits has float32 and float16 kernels, Transpose, Max, Min and Identity included
 *   (an earlier reading of the registrations at commit 003f772b missed them); no bfloat16 (webgpu_supported_types.h:
 *   float and float16). WebGPU on NVIDIA under Vulkan computes float16 as float32 (issue 16).
 */

/** The execution providers the engine lowers for. */
export type ExecutionProvider = "cpu" | "cuda" | "webgpu";

export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ["cpu", "cuda", "webgpu"];

/** The floating-point dtypes a graph computes in. */
export type KernelFloat = "float32" | "float16" | "bfloat16";

const F32_F16: readonly KernelFloat[] = ["float32", "float16"];
const ALL: readonly KernelFloat[] = ["float32", "float16", "bfloat16"];

/** Per op, the float dtypes of its data type T with a kernel (other inputs are shapes, axes, indices or conditions). */
const CUDA: Readonly<Record<string, readonly KernelFloat[]>> = {
  Abs: ALL,
  Add: ALL,
  Sub: ALL,
  Mul: ALL,
  Div: ALL,
  Pow: ALL,
  Max: ALL,
  Min: ALL,
  Neg: ALL,
  Exp: ALL,
  Erf: ALL,
  Sqrt: ALL,
  Tanh: ALL,
  Sigmoid: ALL,
  Relu: ALL,
  Gelu: ALL,
  MatMul: ALL,
  Gemm: ALL,
  Softmax: ALL,
  LayerNormalization: ALL,
  ReduceSum: ALL,
  Where: ALL,
  Concat: ALL,
  Expand: ALL,
  Gather: ALL,
  Reshape: ALL,
  Slice: ALL,
  Transpose: ALL,
  Identity: ALL,
  // No bfloat16 kernel at opset 21 (Sin, Cos and Conv are not even valid bfloat16 ONNX before opset 22).
  Log: F32_F16,
  Reciprocal: F32_F16,
  Sin: F32_F16,
  Cos: F32_F16,
  Greater: F32_F16,
  Less: F32_F16,
  Equal: F32_F16,
  ReduceMean: F32_F16,
  ReduceMax: F32_F16,
  Conv: F32_F16,
  ConvTranspose: F32_F16,
  Pad: F32_F16,
  Resize: F32_F16,
};

/** Measured on onnxruntime-node 1.30.0's CPU provider (see `kernels.test.ts`). */
const CPU: Readonly<Record<string, readonly KernelFloat[]>> = {
  Abs: F32_F16,
  Add: F32_F16,
  Sub: F32_F16,
  Mul: F32_F16,
  Div: F32_F16,
  Pow: F32_F16,
  Max: F32_F16,
  Min: F32_F16,
  Neg: F32_F16,
  Exp: F32_F16,
  Erf: F32_F16,
  Sqrt: F32_F16,
  Tanh: F32_F16,
  Sigmoid: F32_F16,
  Relu: F32_F16,
  Gelu: F32_F16,
  MatMul: F32_F16,
  Gemm: F32_F16,
  Softmax: F32_F16,
  // The CPU provider has bfloat16 LayerNormalization (measured), unlike the rest of its math.
  LayerNormalization: ALL,
  ReduceSum: F32_F16,
  Where: F32_F16,
  Log: F32_F16,
  Reciprocal: F32_F16,
  Sin: F32_F16,
  Cos: F32_F16,
  Greater: F32_F16,
  Less: F32_F16,
  Equal: F32_F16,
  ReduceMean: F32_F16,
  ReduceMax: F32_F16,
  Conv: F32_F16,
  ConvTranspose: F32_F16,
  // No bfloat16 Expand or Pad (measured).
  Expand: F32_F16,
  Pad: F32_F16,
  // Data movement has bfloat16 kernels on the CPU too.
  Concat: ALL,
  Gather: ALL,
  Reshape: ALL,
  Slice: ALL,
  Transpose: ALL,
  Identity: ALL,
};

const WEBGPU: Readonly<Record<string, readonly KernelFloat[]>> = {
  Abs: F32_F16,
  Add: F32_F16,
  Sub: F32_F16,
  Mul: F32_F16,
  Div: F32_F16,
  Pow: F32_F16,
  Max: F32_F16,
  Min: F32_F16,
  Neg: F32_F16,
  Exp: F32_F16,
  Erf: F32_F16,
  Sqrt: F32_F16,
  Tanh: F32_F16,
  Sigmoid: F32_F16,
  Relu: F32_F16,
  Gelu: F32_F16,
  MatMul: F32_F16,
  Gemm: F32_F16,
  Softmax: F32_F16,
  LayerNormalization: F32_F16,
  ReduceSum: F32_F16,
  ReduceMean: F32_F16,
  ReduceMax: F32_F16,
  Where: F32_F16,
  Log: F32_F16,
  Reciprocal: F32_F16,
  Sin: F32_F16,
  Cos: F32_F16,
  Greater: F32_F16,
  Less: F32_F16,
  Equal: F32_F16,
  Conv: F32_F16,
  ConvTranspose: F32_F16,
  Pad: F32_F16,
  Resize: F32_F16,
  Concat: F32_F16,
  Expand: F32_F16,
  Gather: F32_F16,
  Reshape: F32_F16,
  Slice: F32_F16,
  Transpose: F32_F16,
  Identity: F32_F16,
  Cast: F32_F16,
};

/** Dtypes each provider's Cast converts between (both sides must be in the list). */
const CAST: Readonly<Record<ExecutionProvider, readonly DType[]>> = {
  cpu: ["float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"],
  cuda: ["float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"],
  // webgpu_supported_types.h: float, float16, int32, uint32, bool.
  webgpu: ["float32", "float16", "int32", "bool"],
};

/** The (op → dtypes) kernel table of each provider, at opset 21. Cast is described by `castKernel`. */
export const KERNEL_TABLE: Readonly<
  Record<ExecutionProvider, Readonly<Record<string, readonly KernelFloat[]>>>
> = { cpu: CPU, cuda: CUDA, webgpu: WEBGPU };

/** One node of a lowered model, as the kernel check sees it. */
export interface LoweredNode {
  name: string;
  op: string;
  /** Dtypes of its inputs and outputs, in order. */
  inputs: readonly DType[];
  outputs: readonly DType[];
}

const FLOATS: ReadonlySet<DType> = new Set(["float32", "float16", "bfloat16", "float64"]);

/**
 * The dtype that picks a node's kernel (ONNX's type parameter T): the first floating-point input's, or for
 * ops with no floating-point input (integer shape arithmetic) the first input's. Where's T is its second input.
 * Undefined for Cast (two type parameters; see `castKernel`) and for nodes without inputs.
 */
export function kernelDtype(node: LoweredNode): DType | undefined {
  if (node.op === "Cast") return undefined;
  const candidates = node.op === "Where" ? node.inputs.slice(1) : node.inputs;
  return candidates.find((d) => FLOATS.has(d)) ?? candidates[0];
}

/** Whether `provider` has a kernel for `op` computing in `dtype` (at opset 21). */
export function hasKernel(provider: ExecutionProvider, op: string, dtype: DType): boolean {
  const row = KERNEL_TABLE[provider][op];
  return row !== undefined && (row as readonly DType[]).includes(dtype);
}

/** Whether `provider`'s Cast converts `from` to `to`. */
export function castKernel(provider: ExecutionProvider, from: DType, to: DType): boolean {
  const types = CAST[provider];
  return types.includes(from) && types.includes(to);
}

/** A node that `provider` cannot run as lowered, and why. */
export interface UncoveredNode {
  node: string;
  op: string;
  dtype: string;
  reason: string;
}

/**
 * The nodes of `nodes` that `provider` has no kernel for. Integer and bool nodes (shape arithmetic on constants)
 * are not checked: the engine's graphs keep them out of the compute path and onnxruntime folds them.
 */
export function uncoveredNodes(nodes: readonly LoweredNode[], provider: ExecutionProvider): UncoveredNode[] {
  const out: UncoveredNode[] = [];
  for (const n of nodes) {
    if (n.op === "Cast") {
      const from = n.inputs[0]!;
      const to = n.outputs[0]!;
      if (!castKernel(provider, from, to))
        out.push({ node: n.name, op: n.op, dtype: `${from}->${to}`, reason: `no ${provider} Cast kernel` });
      continue;
    }
    const dtype = kernelDtype(n);
    if (dtype === undefined || !FLOATS.has(dtype)) continue;
    if (KERNEL_TABLE[provider][n.op] === undefined)
      out.push({ node: n.name, op: n.op, dtype, reason: `${provider} has no ${n.op} kernel at opset 21` });
    else if (!hasKernel(provider, n.op, dtype))
      out.push({ node: n.name, op: n.op, dtype, reason: `${provider} has no ${dtype} ${n.op} kernel` });
  }
  return out;
}

/** `uncoveredNodes` grouped by op and dtype, with counts: "ReduceMean bfloat16 ×12 (no cuda bfloat16 ReduceMean kernel)". */
export function summarizeUncovered(nodes: readonly UncoveredNode[]): string[] {
  const groups = new Map<string, { n: number; reason: string }>();
  for (const u of nodes) {
    const key = `${u.op} ${u.dtype}`;
    const g = groups.get(key);
    if (g) g.n++;
    else groups.set(key, { n: 1, reason: u.reason });
  }
  return [...groups].map(([k, g]) => `${k} ×${g.n} (${g.reason})`);
}
