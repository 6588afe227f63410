import { type Graph, GraphError, type Node, type Tensor } from "./graph.js";
import { isFloat } from "./ops.js";
import { isDifferentiableInput, sumGradients, vjpRule, zeros } from "./vjp.js";

/**
 * Reverse-mode autodiff over the graph IR. `grad` appends the backward pass to the same graph, so a
 * training step (forward, loss, gradients, even the optimizer update) is one ordinary graph that lowers to
 * one ONNX model — the only way to keep activations on the device with onnxruntime-node.
 */

export interface GradOptions {
  /**
   * The upstream gradient dL/dy, same shape and dtype as `y`. Defaults to ones when `y` has one element;
   * required otherwise.
   */
  seed?: Tensor;
  /** Module-path prefix of the backward nodes (default "grad"); each node also gets its forward node's scope. */
  scope?: string;
}

/** The attribute that marks a node cloned from a recompute region (value: the forward node's id). */
export const RECOMPUTE_OF_ATTR = "_recompute_of";

/**
 * Gradients of `y` with respect to each tensor in `wrt`, as new tensors of the same graph (shape and dtype of
 * the corresponding `wrt`).
 *
 * - Gradients stop at `stopGradient` nodes and never flow through integer or bool tensors (indices, masks,
 *   comparisons); asking for the gradient of an integer tensor is an error.
 * - A `wrt` tensor that `y` does not depend on (or only through stopped paths) gets zeros, not an error, so
 *   parameter lists can be generic.
 * - Nodes built inside `graph.recompute(...)` are re-emitted in the backward pass from the region's inputs
 *   (clones carry the `_recompute_of` attribute), so the backward never reads the region's interior
 *   activations and onnxruntime can free them after the forward pass. Region outputs (tensors used outside
 *   the region) are kept.
 */
export function grad(y: Tensor, wrt: readonly Tensor[], options: GradOptions = {}): Tensor[] {
  const g = y.graph;
  for (const w of wrt) {
    if (w.graph !== g) throw new GraphError(`grad: wrt tensor ${w} belongs to another graph than y ${y}`);
    if (!isFloat(w.dtype)) {
      throw new GraphError(`grad: wrt tensor ${w} is ${w.dtype}; only floating-point tensors have gradients`);
    }
  }
  if (!isFloat(y.dtype)) throw new GraphError(`grad: y ${y} is ${y.dtype}; it must be floating-point`);
  const seed = options.seed;
  if (seed) {
    if (seed.graph !== g) throw new GraphError(`grad: seed ${seed} belongs to another graph than y ${y}`);
    if (seed.dtype !== y.dtype || !sameShape(seed.shape, y.shape)) {
      throw new GraphError(`grad: seed ${seed} must have y's dtype and shape (${y})`);
    }
  } else if (y.size !== 1) {
    throw new GraphError(
      `grad: y ${y} has ${y.size} elements; reduce it to a scalar or pass options.seed (dL/dy)`,
    );
  }

  const forwardCount = g.nodes.length;
  const forward = g.nodes.slice(0, forwardCount);

  // Tensors that depend differentiably on some wrt tensor: only these carry gradients.
  const active = new Set<number>(wrt.map((w) => w.id));
  for (const node of forward) {
    if (node.attrs._stop_gradient) continue;
    if (!node.inputs.some((t, i) => active.has(t.id) && isDifferentiableInput(node.op, i))) continue;
    for (const out of node.outputs) if (isFloat(out.dtype)) active.add(out.id);
  }

  const prefix = options.scope ?? "grad";
  const inScope = <T>(scope: string, fn: () => T): T =>
    g.scope(prefix, () => (scope ? g.scope(scope, fn) : fn()));

  const primalIn = recomputer(g, forward, y, wrt);
  // Every gradient contribution to a tensor, summed once its producer is reached (or at the end for wrt),
  // so the sum sees all of them together (sumGradients joins slices' padded pieces before adding).
  const grads = new Map<number, Tensor[]>();
  if (active.has(y.id)) {
    grads.set(y.id, [seed ?? inScope("", () => g.constant(1, y.shape, y.dtype))]);
  }
  const total = (t: Tensor, scope: string): Tensor | undefined => {
    const parts = grads.get(t.id);
    if (!parts || parts.length === 1) return parts?.[0];
    const sum = inScope(scope, () => sumGradients(parts));
    grads.set(t.id, [sum]);
    return sum;
  };
  for (let n = forwardCount - 1; n >= 0 && grads.size > 0; n--) {
    const node = forward[n]!;
    const outGrads = node.outputs.map((o) => total(o, node.scope));
    if (outGrads.every((t) => t === undefined)) continue;
    const needs = (i: number) =>
      i < node.inputs.length && active.has(node.inputs[i]!.id) && isDifferentiableInput(node.op, i);
    if (!node.inputs.some((_, i) => needs(i))) continue;
    const rule = vjpRule(node.op);
    if (!rule) {
      throw new GraphError(
        `grad: no vector-Jacobian rule for op ${node.op} (node #${node.id} at "${node.scope}"); register one with registerVjp or put stopGradient before it`,
      );
    }
    const inGrads = inScope(node.scope, () =>
      rule({ node, grads: outGrads, primal: primalIn(node.recompute), needs }),
    );
    node.inputs.forEach((input, i) => {
      const gi = inGrads[i];
      if (!gi || !needs(i)) return;
      if (gi.dtype !== input.dtype || !sameShape(gi.shape, input.shape)) {
        throw new GraphError(
          `grad: the ${node.op} rule gave ${gi} for input ${i} ${input} (engine bug: shapes must match)`,
        );
      }
      const parts = grads.get(input.id);
      if (parts) parts.push(gi);
      else grads.set(input.id, [gi]);
    });
  }
  return wrt.map((w) => total(w, "") ?? inScope("", () => zeros(w)));
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Returns `primalIn(region)`, the `primal` of the rules of nodes in recompute region `region` (undefined
 * outside every region): `t` itself, or for a tensor inside a recompute region that nothing outside the
 * outermost region holding it reads, a clone re-emitted from that region's inputs (built once per holding
 * region, on first use). The holding region is the innermost one enclosing both the rule's node and `t`: a
 * nested region's own rules get a clone of its interior distinct from the one the enclosing region's
 * recomputation made, so that one dies as soon as the enclosing region has used it (with one region level this
 * is the plain per-region clone).
 */
function recomputer(
  g: Graph,
  forward: readonly Node[],
  y: Tensor,
  wrt: readonly Tensor[],
): (region: number | undefined) => (t: Tensor) => Tensor {
  const paths = new Map<number, number[]>();
  // The regions enclosing `region`, innermost first.
  const path = (region: number): number[] => {
    let p = paths.get(region);
    if (!p) {
      p = [];
      for (let r: number | undefined = region; r !== undefined; r = g.recomputeParent(r)) p.push(r);
      paths.set(region, p);
    }
    return p;
  };
  const outermost = (region: number) => path(region).at(-1)!;
  const within = (inner: number | undefined, region: number) =>
    inner !== undefined && path(inner).includes(region);

  const kept = new Set<number>([y.id, ...wrt.map((w) => w.id)]);
  for (const node of forward) {
    for (const t of node.inputs) {
      const p = t.producer;
      if (p && p.recompute !== undefined && !within(node.recompute, outermost(p.recompute))) kept.add(t.id);
    }
  }
  const inForward = new Set(forward.map((n) => n.id));
  const clones = new Map<string, Tensor>();
  const value = (context: number | undefined, t: Tensor): Tensor => {
    const node = t.producer;
    if (!node || node.recompute === undefined || !inForward.has(node.id) || kept.has(t.id)) return t;
    const holder =
      (context === undefined ? undefined : path(node.recompute).find((r) => within(context, r))) ??
      outermost(node.recompute);
    const key = (id: number) => `${holder}:${id}`;
    const done = clones.get(key(t.id));
    if (done) return done;
    const inputs = node.inputs.map((i) => value(holder, i));
    // Built inside the rule that first needs it, so it carries that rule's scope.
    const outs = g.addNode(
      node.op,
      inputs,
      { ...node.attrs, [RECOMPUTE_OF_ATTR]: node.id },
      node.outputs.map((o) => ({ shape: o.shape, dtype: o.dtype })),
    );
    node.outputs.forEach((o, i) => {
      clones.set(key(o.id), outs[i]!);
    });
    return clones.get(key(t.id))!;
  };
  const primals = new Map<number | undefined, (t: Tensor) => Tensor>();
  return (region) => {
    let primal = primals.get(region);
    if (!primal) {
      primal = (t: Tensor) => value(region, t);
      primals.set(region, primal);
    }
    return primal;
  };
}
