import { DTYPE_BYTES, numel } from "./dtype.js";
import type { Graph, Node, Tensor } from "./graph.js";

/**
 * A memory estimate for one run of the part of a graph that `outputs` needs, from a liveness walk: nodes run in
 * graph (topological) order, each output is allocated when its node runs and freed after its last reader, and
 * the peak of what is alive at once is the activation memory. Frozen weights count once at their stored size;
 * a Cast of a weight to another dtype counts once more (onnxruntime's constant folding keeps the cast copy);
 * Transposes of weights cost nothing (lowering reads the weight in place). It models a planner that frees
 * eagerly and does not compute in place, so it errs high on in-place elementwise chains and low on allocator
 * rounding (onnxruntime's arena grows in chunks); `edit-r1 plan` states the margin measured against peak RSS.
 */
export interface MemoryPlan {
  /** Frozen weights (initializers) the outputs reach, as stored. */
  weightBytes: number;
  /** Weight copies made by casting them to the compute dtype (and other constant subgraphs). */
  castWeightBytes: number;
  /** Graph inputs (feeds), alive for the whole run. */
  inputBytes: number;
  /** The requested outputs. */
  outputBytes: number;
  /** The most bytes of intermediate tensors (outputs included, once computed) alive at once. */
  peakActivationBytes: number;
  /** The node at whose run the peak is reached ("<scope>/<Op>_<id>"). */
  peakAt: string;
  /** weightBytes + castWeightBytes + inputBytes + peakActivationBytes. */
  totalBytes: number;
  /** Live nodes walked. */
  nodeCount: number;
}

const bytesOf = (t: Tensor) => numel(t.shape) * DTYPE_BYTES[t.dtype];
const nameOf = (n: Node) => `${n.scope ? `${n.scope}/` : ""}${n.op}_${n.id}`;

export function planMemory(graph: Graph, outputs: Readonly<Record<string, Tensor>>): MemoryPlan {
  // The nodes the outputs reach.
  const live = new Set<number>();
  const liveTensors = new Set<Tensor>();
  const stack = Object.values(outputs);
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (liveTensors.has(t)) continue;
    liveTensors.add(t);
    const p = t.producer;
    if (p && !live.has(p.id)) {
      live.add(p.id);
      for (const i of p.inputs) stack.push(i);
    }
  }
  const requested = new Set(Object.values(outputs));
  // Tensors computed from weights and literals only: folded once, not per run.
  const constant = new Set<Tensor>();
  const isConstant = (t: Tensor) =>
    t.source.kind === "initializer" || t.source.kind === "constant" || constant.has(t);
  let weightBytes = 0;
  let inputBytes = 0;
  for (const t of liveTensors) {
    if (t.source.kind === "initializer") weightBytes += bytesOf(t);
    if (t.source.kind === "input") inputBytes += bytesOf(t);
  }
  const readers = new Map<Tensor, number>();
  for (const n of graph.nodes)
    if (live.has(n.id)) for (const i of n.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);

  let castWeightBytes = 0;
  let current = 0;
  let peak = 0;
  let peakAt = "";
  for (const n of graph.nodes) {
    if (!live.has(n.id)) continue;
    if (n.inputs.length > 0 && n.inputs.every(isConstant)) {
      for (const o of n.outputs) constant.add(o);
      // Weight views (Transpose) are read in place; casts and other folded results are kept.
      if (n.op !== "Transpose" && n.op !== "Reshape")
        for (const o of n.outputs) castWeightBytes += bytesOf(o);
      continue;
    }
    for (const o of n.outputs) current += bytesOf(o);
    if (current > peak) {
      peak = current;
      peakAt = nameOf(n);
    }
    for (const i of n.inputs) {
      if (i.source.kind !== "node" || constant.has(i)) continue;
      const left = (readers.get(i) ?? 0) - 1;
      readers.set(i, left);
      if (left === 0 && !requested.has(i)) current -= bytesOf(i);
    }
    // Outputs nothing reads (a LayerNormalization's statistics) go right away.
    for (const o of n.outputs) if (!readers.get(o) && !requested.has(o)) current -= bytesOf(o);
  }
  let outputBytes = 0;
  for (const t of requested) outputBytes += bytesOf(t);
  return {
    weightBytes,
    castWeightBytes,
    inputBytes,
    outputBytes,
    peakActivationBytes: peak,
    peakAt,
    totalBytes: weightBytes + castWeightBytes + inputBytes + peak,
    nodeCount: live.size,
  };
}
