import { realpathSync } from "node:fs";
import * as path from "node:path";
import { RECOMPUTE_OF_ATTR } from "./autodiff.js";
import { DTYPE_BYTES, type DType, numel } from "./dtype.js";
import {
  type AttrValue,
  type ExternalData,
  type Graph,
  GraphError,
  type Node,
  type Tensor,
} from "./graph.js";
import {
  type ExecutionProvider,
  hasKernel,
  type KernelFloat,
  kernelDtype,
  type LoweredNode,
} from "./kernels.js";
import {
  AttributeType,
  encodeModel,
  type OnnxAttribute,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from "./onnx-proto.js";
import { onnxDtypeCode } from "./ops.js";
import { float32ToBfloat16Bits, float32ToFloat16Bits } from "./safetensors-convert.js";

/** The ONNX IR version and default-domain opset the engine emits. */
export const IR_VERSION = 10;
export const OPSET = 21;

export interface LowerOptions {
  /** The tensors to compute, by output name. Nodes that do not reach them are pruned. */
  outputs: Readonly<Record<string, Tensor>>;
  /**
   * Lower for this execution provider: a float16/bfloat16 node the provider has no kernel for (see
   * `KERNEL_TABLE`) computes in float32 instead, with Casts around it (inputs up, outputs back down), when the
   * provider has the float32 kernel. A chain of such nodes stays in float32 between them. Without it the graph
   * is lowered as built.
   */
  provider?: ExecutionProvider;
}

/** Nodes of one op and dtype that `lower` moved to float32 for the provider (`LowerOptions.provider`). */
export interface Float32Fallback {
  op: string;
  dtype: KernelFloat;
  count: number;
}

export interface ValueSpec {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

export interface LoweredModel {
  /** ONNX ModelProto bytes. */
  bytes: Uint8Array;
  /**
   * The folder external-data locations are relative to (the common ancestor of all weight files, not
   * resolved through symlinks), or undefined when every initializer is inline.
   */
  externalFolder: string | undefined;
  /** Total bytes of external initializers, and of those that are not float32 (cast inside the graph). */
  externalBytes: number;
  externalNonFloat32Bytes: number;
  /** Run-time inputs the outputs need, in graph order. */
  inputs: ValueSpec[];
  /** Graph inputs the requested outputs do not depend on (feeding them is allowed and ignored). */
  unusedInputs: string[];
  outputs: ValueSpec[];
  nodeCount: number;
  /** Every emitted node with the dtypes of its inputs and outputs (what `uncoveredNodes` checks). */
  nodes: LoweredNode[];
  /** What `LowerOptions.provider` moved to float32; empty without a provider. */
  float32Fallbacks: Float32Fallback[];
  /**
   * Whether nodes recomputed from recompute regions are emitted: a session of it must turn off onnxruntime's
   * common-subexpression elimination, which would merge each recomputed node back into its forward twin (same op,
   * same inputs) and so keep the forward activations alive, undoing the recomputation.
   */
  recomputes: boolean;
}

/**
 * Lowers the part of `graph` that the requested outputs need to an ONNX model (IR 10, opset 21).
 *
 * Tensor names: inputs and initializers keep their names, requested outputs take their output names,
 * everything else gets a short internal name. Node names are `<scope>/<Op>_<id>` so profiles and errors
 * read like the model's module tree.
 *
 * Lowering is a fixed sequence of passes over the graph; each is a function below, in this order.
 */
export function lower(graph: Graph, options: LowerOptions): LoweredModel {
  const outputs = checkOutputs(graph, options);
  const live = pruneToOutputs(outputs);
  const fusion = fuseBiasIntoGemm(graph, live, outputs);
  const naming = nameTensors(outputs);
  const emitted = emitNodes(graph, live, fusion, naming.tensorName);
  const types = valueTypes(graph, live, outputs, naming.tensorName, emitted.types);
  const kept = keepInFloat32([...emitted.nodes, ...naming.outputIdentities], types, options.provider);
  const nodes = kept.nodes;
  const constants = emitConstants(graph, live, naming.tensorName);
  const weights = externaliseWeights(graph, live);
  const io = describeIo(graph, live, outputs, naming.tensorName);
  const bytes = encode(graph, nodes, [...emitted.initializers, ...constants, ...weights.initializers], io);
  return {
    bytes,
    externalFolder: weights.externalFolder,
    externalBytes: weights.externalBytes,
    externalNonFloat32Bytes: weights.externalNonFloat32Bytes,
    inputs: io.inputs,
    unusedInputs: io.unusedInputs,
    outputs: io.outputs,
    nodeCount: nodes.length,
    nodes: nodes.map((n) => ({
      name: n.name,
      op: n.opType,
      inputs: n.inputs.map((v) => typeOf(types, v)),
      outputs: n.outputs.map((v) => typeOf(types, v)),
    })),
    float32Fallbacks: kept.fallbacks,
    recomputes: [...live.nodes].some((id) => graph.nodes[id]!.attrs[RECOMPUTE_OF_ATTR] !== undefined),
  };
}

type OutputEntry = readonly [name: string, tensor: Tensor];
type TensorNamer = (t: Tensor) => string;

// ---- Pass 1: check the request ------------------------------------------------------------------------

/**
 * The requested outputs, checked up front: an output name must not collide with an input or initializer name
 * (ONNX value names are one namespace), and every output must come from this graph.
 */
function checkOutputs(graph: Graph, options: LowerOptions): OutputEntry[] {
  const outputEntries = Object.entries(options.outputs);
  if (outputEntries.length === 0) {
    throw new GraphError(`lower "${graph.name}": no outputs requested; pass { outputs: { name: tensor } }`);
  }
  const leafNames = new Set<string>();
  for (const t of [...graph.inputs, ...graph.initializers]) {
    leafNames.add((t.source as { name: string }).name);
  }
  for (const [name, t] of outputEntries) {
    if (t.graph !== graph) throw new GraphError(`lower: output "${name}" (${t}) belongs to another graph`);
    if (leafNames.has(name)) {
      throw new GraphError(
        `lower: output name "${name}" is already an input or initializer name; choose another output name`,
      );
    }
  }
  return outputEntries;
}

// ---- Pass 2: prune what the outputs do not need -------------------------------------------------------

/** The nodes and tensors the outputs reach, and the MatMuls that will read a frozen weight in place. */
interface LiveSet {
  nodes: Set<number>;
  tensors: Set<Tensor>;
  /** MatMul node id → its right operand seen through Transposes down to a frozen weight. */
  weightViews: Map<number, WeightView>;
}

/**
 * A graph holds every pass a model builder made (v_θ, v_old, v_ref, dead branches); only what the outputs
 * reach is emitted, and inputs they do not reach are reported as unused. Weight views are taken during the
 * sweep, so the Transposes a MatMul looks through are live only if something else reads them. Nodes were
 * appended in topological order, so one backward sweep from the outputs finds everything.
 */
function pruneToOutputs(outputs: readonly OutputEntry[]): LiveSet {
  const live = new Set<number>();
  const liveTensors = new Set<Tensor>();
  const stack: Tensor[] = outputs.map(([, t]) => t);
  const weightViews = new Map<number, WeightView>();
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (liveTensors.has(t)) continue;
    liveTensors.add(t);
    const p = t.producer;
    if (p && !live.has(p.id)) {
      live.add(p.id);
      const view = p.op === "MatMul" ? weightView(p.inputs[1]!) : undefined;
      if (view) weightViews.set(p.id, view);
      for (const i of operands(p, view)) stack.push(i);
    }
  }
  return { nodes: live, tensors: liveTensors, weightViews };
}

/** What a node reads once lowered: a weight-view MatMul reads the weight itself, not its Transposes. */
function operands(n: Node, view: WeightView | undefined): readonly Tensor[] {
  return view ? [n.inputs[0]!, view.base] : n.inputs;
}

/** A MatMul's right operand seen through 2-D Transposes down to a frozen weight (maybe Cast). */
interface WeightView {
  base: Tensor;
  transposed: boolean;
}

/**
 * Frozen weights reach MatMul as Transpose(W) ([out, in] storage, see nn.linear) or, in backward graphs,
 * Transpose(Transpose(W)). Left alone, onnxruntime's constant folding materialises a transposed copy of
 * every such weight (a second copy of a memory-mapped checkpoint). Lowering instead feeds W itself to
 * Gemm(transB=1) or MatMul, so the weight is read in place.
 */
function weightView(b: Tensor): WeightView | undefined {
  if (b.rank !== 2) return undefined;
  let t = b;
  let transposed = false;
  while (t.producer?.op === "Transpose" && t.rank === 2) {
    transposed = !transposed;
    t = t.producer.inputs[0]!;
  }
  if (t === b) return undefined;
  const leaf = t.producer?.op === "Cast" ? t.producer.inputs[0]! : t;
  return leaf.source.kind === "initializer" ? { base: t, transposed } : undefined;
}

// ---- Pass 3: fuse linear-layer biases into Gemm -------------------------------------------------------

/** Which bias Adds fold into their MatMul's Gemm (input C), in both directions. */
interface BiasFusion {
  /** MatMul node id → the bias its Gemm adds (the MatMul itself is then not emitted on its own). */
  biasOfMatmul: Map<number, Tensor>;
  /** Add node id → the MatMul whose Gemm replaces it. */
  matmulOfAdd: Map<number, Node>;
}

/**
 * A linear layer's bias Add goes into its Gemm as input C (one pass over the output fewer) when nothing
 * else reads the product without the bias. The Gemm is emitted where the Add was, after the bias exists.
 */
function fuseBiasIntoGemm(graph: Graph, live: LiveSet, outputs: readonly OutputEntry[]): BiasFusion {
  const readers = countReaders(graph, live);
  const requested = new Set(outputs.map(([, t]) => t));
  const biasOfMatmul = new Map<number, Tensor>();
  const matmulOfAdd = new Map<number, Node>();
  for (const n of graph.nodes) {
    if (!live.nodes.has(n.id) || n.op !== "Add") continue;
    const out = n.outputs[0]!;
    for (const [m, b] of [
      [0, 1],
      [1, 0],
    ] as const) {
      const mm = n.inputs[m]!.producer;
      const bias = n.inputs[b]!;
      const product = n.inputs[m]!;
      const fits =
        mm !== undefined &&
        live.weightViews.get(mm.id)?.transposed === true &&
        !biasOfMatmul.has(mm.id) &&
        bias.rank === 1 &&
        bias.dtype === out.dtype &&
        bias.shape[0] === out.shape[out.rank - 1] &&
        product.shape.length === out.shape.length &&
        product.shape.every((d, i) => d === out.shape[i]) &&
        readers.get(product) === 1 &&
        !requested.has(product);
      if (fits) {
        biasOfMatmul.set(mm.id, bias);
        matmulOfAdd.set(n.id, mm);
        break;
      }
    }
  }
  return { biasOfMatmul, matmulOfAdd };
}

/** How many live nodes read each tensor (as lowered: weight-view MatMuls read the weight, not its Transposes). */
function countReaders(graph: Graph, live: LiveSet): Map<Tensor, number> {
  const readers = new Map<Tensor, number>();
  for (const n of graph.nodes) {
    if (!live.nodes.has(n.id)) continue;
    for (const t of operands(n, live.weightViews.get(n.id))) readers.set(t, (readers.get(t) ?? 0) + 1);
  }
  return readers;
}

// ---- Pass 4: name tensors -----------------------------------------------------------------------------

/**
 * ONNX refers to values by name. Leaves keep their own names, a requested output computed by a node takes the
 * output's name, and the rest get short internal names. An output that is a leaf, or a tensor requested under a
 * second name, cannot be renamed, so it gets an Identity node producing the output name.
 */
function nameTensors(outputs: readonly OutputEntry[]): {
  tensorName: TensorNamer;
  outputIdentities: OnnxNode[];
} {
  const rename = new Map<Tensor, string>();
  const outputIdentities: OnnxNode[] = [];
  for (const [name, t] of outputs) {
    if (t.source.kind === "node" && !rename.has(t)) rename.set(t, name);
    else {
      outputIdentities.push({
        name: `output/${name}/Identity`,
        opType: "Identity",
        inputs: [tensorName(t)],
        outputs: [name],
        attributes: [],
      });
    }
  }
  function tensorName(t: Tensor): string {
    const r = rename.get(t);
    if (r !== undefined) return r;
    switch (t.source.kind) {
      case "input":
      case "initializer":
        return t.source.name;
      case "constant":
        return `:c${t.id}`;
      case "node":
        return `:t${t.id}`;
    }
  }
  return { tensorName, outputIdentities };
}

// ---- Pass 5: emit nodes -------------------------------------------------------------------------------

/**
 * The live nodes as ONNX nodes, in graph (topological) order: weight-view MatMuls (and their fused bias Adds)
 * become MatMul or Gemm on the weight itself; every other node maps one to one, without its private
 * (`_`-prefixed) attributes. Gemm on a rank > 2 input needs shape initializers for its Reshapes; they are
 * returned alongside.
 */
function emitNodes(
  graph: Graph,
  live: LiveSet,
  fusion: BiasFusion,
  tensorName: TensorNamer,
): { nodes: OnnxNode[]; initializers: OnnxTensor[]; types: Map<string, DType> } {
  const initializers: OnnxTensor[] = [];
  const nodes: OnnxNode[] = [];
  const types = new Map<string, DType>();
  for (const n of graph.nodes) {
    if (!live.nodes.has(n.id)) continue;
    if (fusion.biasOfMatmul.has(n.id)) continue;
    const fused = fusion.matmulOfAdd.get(n.id);
    if (fused) {
      const view = live.weightViews.get(fused.id)!;
      const bias = fusion.biasOfMatmul.get(fused.id)!;
      nodes.push(
        ...lowerWeightMatmul(
          nodeName(fused),
          fused.inputs[0]!,
          view,
          n.outputs[0]!,
          tensorName,
          initializers,
          types,
          bias,
        ),
      );
      continue;
    }
    const view = live.weightViews.get(n.id);
    if (view) {
      nodes.push(
        ...lowerWeightMatmul(nodeName(n), n.inputs[0]!, view, n.outputs[0]!, tensorName, initializers, types),
      );
      continue;
    }
    const attributes: OnnxAttribute[] = [];
    for (const [k, v] of Object.entries(n.attrs)) if (!k.startsWith("_")) attributes.push(lowerAttr(k, v));
    nodes.push({
      name: nodeName(n),
      opType: n.op,
      inputs: n.inputs.map(tensorName),
      outputs: n.outputs.map(tensorName),
      attributes,
    });
  }
  return { nodes, initializers, types };
}

/** `<scope>/<Op>_<id>`, so profiles and errors read like the model's module tree. */
function nodeName(n: Node): string {
  return `${n.scope ? `${n.scope}/` : ""}${n.op}_${n.id}`;
}

function lowerWeightMatmul(
  name: string,
  a: Tensor,
  view: WeightView,
  out: Tensor,
  tensorName: TensorNamer,
  initializers: OnnxTensor[],
  types: Map<string, DType>,
  bias?: Tensor,
): OnnxNode[] {
  const int64 = (suffix: string, values: readonly number[]) => {
    const tensorNameOf = `${tensorName(out)}${suffix}`;
    types.set(tensorNameOf, "int64");
    initializers.push({
      name: tensorNameOf,
      dataType: onnxDtypeCode("int64"),
      dims: [values.length],
      rawData: encodeData(BigInt64Array.from(values, BigInt), "int64"),
    });
    return tensorNameOf;
  };
  if (!view.transposed) {
    return [
      {
        name,
        opType: "MatMul",
        inputs: [tensorName(a), tensorName(view.base)],
        outputs: [tensorName(out)],
        attributes: [],
      },
    ];
  }
  const gemm = (input: string, output: string): OnnxNode => ({
    name: `${name}/Gemm`,
    opType: "Gemm",
    inputs: bias ? [input, tensorName(view.base), tensorName(bias)] : [input, tensorName(view.base)],
    outputs: [output],
    attributes: [{ name: "transB", type: AttributeType.INT, i: 1 }],
  });
  if (a.rank === 2) return [gemm(tensorName(a), tensorName(out))];
  const k = a.shape[a.rank - 1]!;
  const flatIn = `${tensorName(out)}:flat_in`;
  const flatOut = `${tensorName(out)}:flat_out`;
  types.set(flatIn, a.dtype);
  types.set(flatOut, out.dtype);
  return [
    {
      name: `${name}/Reshape_in`,
      opType: "Reshape",
      inputs: [tensorName(a), int64(":shape_in", [-1, k])],
      outputs: [flatIn],
      attributes: [],
    },
    gemm(flatIn, flatOut),
    {
      name: `${name}/Reshape_out`,
      opType: "Reshape",
      inputs: [flatOut, int64(":shape_out", out.shape)],
      outputs: [tensorName(out)],
      attributes: [],
    },
  ];
}

/** Attributes ONNX types as float even when the JS value happens to be an integer (e.g. epsilon 1, alpha 1). */
const FLOAT_ATTRS: ReadonlySet<string> = new Set([
  "alpha",
  "beta",
  "gamma",
  "epsilon",
  "lambd",
  "bias",
  "scale",
  "ratio",
  "extrapolation_value",
  "cubic_coeff_a",
  "spatial_scale",
  "value_float",
  "value_floats",
  "seed",
]);

function lowerAttr(name: string, v: AttrValue): OnnxAttribute {
  if (typeof v === "string") return { name, type: AttributeType.STRING, s: v };
  if (typeof v === "number") {
    return FLOAT_ATTRS.has(name) || !Number.isInteger(v)
      ? { name, type: AttributeType.FLOAT, f: v }
      : { name, type: AttributeType.INT, i: v };
  }
  if (v.length > 0 && typeof v[0] === "string") {
    return { name, type: AttributeType.STRINGS, strings: v as readonly string[] };
  }
  const nums = v as readonly number[];
  return FLOAT_ATTRS.has(name) || nums.some((x) => !Number.isInteger(x))
    ? { name, type: AttributeType.FLOATS, floats: nums }
    : { name, type: AttributeType.INTS, ints: nums };
}

// ---- Pass 5b: keep ops the provider cannot run in float32 ---------------------------------------------

/** The dtype of every value the emitted nodes read or write, by ONNX name. */
function valueTypes(
  graph: Graph,
  live: LiveSet,
  outputs: readonly OutputEntry[],
  tensorName: TensorNamer,
  emitted: ReadonlyMap<string, DType>,
): Map<string, DType> {
  const types = new Map(emitted);
  for (const t of live.tensors) types.set(tensorName(t), t.dtype);
  // Outputs nothing reads (LayerNormalization's statistics) are written all the same.
  for (const n of graph.nodes)
    if (live.nodes.has(n.id)) for (const t of n.outputs) types.set(tensorName(t), t.dtype);
  for (const [name, t] of outputs) types.set(name, t.dtype);
  return types;
}

function typeOf(types: ReadonlyMap<string, DType>, value: string): DType {
  const d = types.get(value);
  if (d === undefined) throw new GraphError(`lower: internal error, no dtype recorded for value "${value}"`);
  return d;
}

/**
 * For `provider`, rewrites each float16/bfloat16 node whose kernel the provider lacks (and whose float32 kernel
 * it has) to compute in float32: inputs of the node's dtype are cast up (one Cast per value, shared by its
 * readers), outputs of that dtype are produced in float32 and cast back down under their own names. A value
 * already available in float32 (the output of an earlier fallback) is read directly, so a chain of fallbacks
 * stays in float32. Nodes keep their order, so the result stays topologically sorted.
 */
function keepInFloat32(
  nodes: readonly OnnxNode[],
  types: Map<string, DType>,
  provider: ExecutionProvider | undefined,
): { nodes: OnnxNode[]; fallbacks: Float32Fallback[] } {
  if (!provider) return { nodes: [...nodes], fallbacks: [] };
  const out: OnnxNode[] = [];
  const float32Of = new Map<string, string>();
  const counts = new Map<string, Float32Fallback>();
  const castNode = (name: string, input: string, output: string, to: DType): OnnxNode => ({
    name,
    opType: "Cast",
    inputs: [input],
    outputs: [output],
    attributes: [{ name: "to", type: AttributeType.INT, i: onnxDtypeCode(to) }],
  });
  for (const n of nodes) {
    const info: LoweredNode = {
      name: n.name,
      op: n.opType,
      inputs: n.inputs.map((v) => typeOf(types, v)),
      outputs: n.outputs.map((v) => typeOf(types, v)),
    };
    const dtype = kernelDtype(info);
    const lacking =
      (dtype === "float16" || dtype === "bfloat16") &&
      !hasKernel(provider, n.opType, dtype) &&
      hasKernel(provider, n.opType, "float32");
    if (!lacking) {
      out.push(n);
      continue;
    }
    const inputs = n.inputs.map((v, i) => {
      if (types.get(v) !== dtype) return v;
      let up = float32Of.get(v);
      if (!up) {
        up = `${v}:fp32`;
        out.push(castNode(`${n.name}/Cast_in${i}_to_fp32`, v, up, "float32"));
        types.set(up, "float32");
        float32Of.set(v, up);
      }
      return up;
    });
    const downs: OnnxNode[] = [];
    const outputs = n.outputs.map((v, i) => {
      if (types.get(v) !== dtype) return v;
      const wide = `${v}:fp32`;
      types.set(wide, "float32");
      float32Of.set(v, wide);
      downs.push(castNode(`${n.name}/Cast_out${i}_to_${dtype}`, wide, v, dtype));
      return wide;
    });
    out.push({ ...n, inputs, outputs }, ...downs);
    const key = `${n.opType} ${dtype}`;
    const c = counts.get(key);
    if (c) c.count++;
    else counts.set(key, { op: n.opType, dtype, count: 1 });
  }
  return { nodes: out, fallbacks: [...counts.values()] };
}

// ---- Pass 6: emit constants ---------------------------------------------------------------------------

/** Live literals become inline initializers, encoded in their declared dtype. */
function emitConstants(graph: Graph, live: LiveSet, tensorName: TensorNamer): OnnxTensor[] {
  const initializers: OnnxTensor[] = [];
  for (const t of graph.constants) {
    if (!live.tensors.has(t) || t.source.kind !== "constant") continue;
    initializers.push({
      name: tensorName(t),
      dataType: onnxDtypeCode(t.dtype),
      dims: t.shape,
      rawData: encodeData(t.source.data, t.dtype),
    });
  }
  return initializers;
}

// ---- Pass 7: externalise weights ----------------------------------------------------------------------

interface ExternalisedWeights {
  initializers: OnnxTensor[];
  externalFolder: string | undefined;
  externalBytes: number;
  externalNonFloat32Bytes: number;
}

/**
 * Live frozen weights become initializers. Weights in files stay there: the initializer is an external-data
 * reference (location, offset, length) into the `.safetensors` file, so a checkpoint is memory-mapped, never
 * copied into the model; in-memory weights are inlined.
 */
function externaliseWeights(graph: Graph, live: LiveSet): ExternalisedWeights {
  const initializers: OnnxTensor[] = [];
  const external: { tensor: OnnxTensor; file: string; data: ExternalData }[] = [];
  let externalBytes = 0;
  let externalNonFloat32Bytes = 0;
  for (const t of graph.initializers) {
    if (!live.tensors.has(t) || t.source.kind !== "initializer") continue;
    const { name, data } = t.source;
    const base = { name, dataType: onnxDtypeCode(t.dtype), dims: t.shape };
    if ("path" in data) {
      const want = numel(t.shape) * DTYPE_BYTES[t.dtype];
      if (data.length !== want) {
        throw new GraphError(
          `initializer "${name}": external data in ${data.path} has ${data.length} bytes but ${t.dtype} [${t.shape.join(",")}] needs ${want}`,
        );
      }
      const tensor: OnnxTensor = { ...base, external: { location: "", offset: data.offset, length: want } };
      external.push({ tensor, file: path.resolve(data.path), data });
      initializers.push(tensor);
      externalBytes += want;
      if (t.dtype !== "float32") externalNonFloat32Bytes += want;
    } else {
      initializers.push({ ...base, rawData: encodeData(data, t.dtype) });
    }
  }
  const externalFolder = locateExternalFiles(external);
  return { initializers, externalFolder, externalBytes, externalNonFloat32Bytes };
}

/**
 * Picks the folder external locations are relative to and fills in each location. ORT resolves symlinks and
 * requires the target inside the folder too (Hugging Face snapshots link to ../../blobs/), so the folder also
 * covers the real locations; ORT rejects absolute locations and ".." segments, so locations are always below it.
 */
function locateExternalFiles(external: readonly { tensor: OnnxTensor; file: string }[]): string | undefined {
  if (external.length === 0) return undefined;
  const folders = external.flatMap((e) => [path.dirname(e.file), path.dirname(realpathOrSelf(e.file))]);
  const externalFolder = commonFolder([...new Set(folders)]);
  for (const e of external) {
    e.tensor.external!.location = path.relative(externalFolder, e.file).split(path.sep).join("/");
  }
  return externalFolder;
}

function realpathOrSelf(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    // A missing file is reported by onnxruntime when the session opens, with its own path in the message.
    return file;
  }
}

/** Longest common ancestor folder of absolute folder paths. */
function commonFolder(folders: readonly string[]): string {
  const split = folders.map((f) => f.split(path.sep));
  const first = split[0]!;
  let n = first.length;
  for (const parts of split) {
    let i = 0;
    while (i < n && i < parts.length && parts[i] === first[i]) i++;
    n = i;
  }
  return first.slice(0, n).join(path.sep) || path.sep;
}

// ---- Pass 8: describe inputs and outputs --------------------------------------------------------------

/** The model's signature: inputs the outputs need (in graph order), inputs they do not, and the outputs. */
function describeIo(
  graph: Graph,
  live: LiveSet,
  outputs: readonly OutputEntry[],
  tensorName: TensorNamer,
): { inputs: ValueSpec[]; unusedInputs: string[]; outputs: ValueSpec[] } {
  const spec = (t: Tensor, name: string): ValueSpec => ({ name, dtype: t.dtype, shape: t.shape });
  const inputs: ValueSpec[] = [];
  const unusedInputs: string[] = [];
  for (const t of graph.inputs) {
    const name = tensorName(t);
    if (live.tensors.has(t)) inputs.push(spec(t, name));
    else unusedInputs.push(name);
  }
  return { inputs, unusedInputs, outputs: outputs.map(([name, t]) => spec(t, name)) };
}

// ---- Pass 9: encode -----------------------------------------------------------------------------------

/** The ModelProto bytes: IR 10, the default domain at opset 21. */
function encode(
  graph: Graph,
  nodes: OnnxNode[],
  initializers: OnnxTensor[],
  io: { inputs: readonly ValueSpec[]; outputs: readonly ValueSpec[] },
): Uint8Array {
  const info = (v: ValueSpec): OnnxValueInfo => ({
    name: v.name,
    elemType: onnxDtypeCode(v.dtype),
    dims: v.shape,
  });
  return encodeModel({
    irVersion: IR_VERSION,
    opsets: [{ domain: "", version: OPSET }],
    producerName: "@edit-r1/engine",
    producerVersion: "0",
    graph: {
      name: graph.name,
      nodes,
      initializers,
      inputs: io.inputs.map(info),
      outputs: io.outputs.map(info),
    },
  });
}

// ---- Shared helpers -----------------------------------------------------------------------------------

type Numeric = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Little-endian bytes of `data` as `dtype`, converting element types when the array's type differs. */
export function encodeData(data: Numeric, dtype: DType): Uint8Array {
  const native: Partial<Record<DType, new (n: number) => Numeric>> = {
    float32: Float32Array,
    float64: Float64Array,
    int64: BigInt64Array,
    int32: Int32Array,
    uint8: Uint8Array,
    bool: Uint8Array,
    float16: Uint16Array,
    bfloat16: Uint16Array,
  };
  const Ctor = native[dtype]!;
  if (data instanceof Ctor) return bytesOf(data);
  if (data instanceof Uint16Array) {
    throw new GraphError(`cannot convert 16-bit float data to ${dtype}; store it as a ${dtype} array`);
  }
  const n = data.length;
  const num = (i: number) => Number(data[i]!);
  switch (dtype) {
    case "float16":
    case "bfloat16": {
      const out = new Uint16Array(n);
      const conv = dtype === "float16" ? float32ToFloat16Bits : float32ToBfloat16Bits;
      for (let i = 0; i < n; i++) out[i] = conv(num(i));
      return bytesOf(out);
    }
    case "int64":
      return bytesOf(BigInt64Array.from({ length: n }, (_, i) => BigInt(Math.trunc(num(i)))));
    case "bool":
      return bytesOf(Uint8Array.from({ length: n }, (_, i) => (num(i) ? 1 : 0)));
    default: {
      const out = new Ctor(n);
      for (let i = 0; i < n; i++) (out as Float64Array)[i] = num(i);
      return bytesOf(out);
    }
  }
}
