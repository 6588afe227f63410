import type { Graph, Tensor } from "@edit-r1/engine";
import { GraphWeights, memoryWeightSource, WeightError } from "@edit-r1/models";

/**
 * Model weights as graph INPUTS instead of initializers, so `grad` can differentiate with respect to every
 * weight (pretraining trains them all) and one compiled graph serves every optimizer step. Each key the
 * builder asks for becomes the input `prefix + key`; `shapes` records what was asked, which also makes this
 * the way to list a builder's weights (build once, read `shapes`).
 */
export class InputWeights extends GraphWeights {
  readonly inputs = new Map<string, Tensor>();

  constructor(
    graph: Graph,
    private readonly inputPrefix = "",
  ) {
    super(graph, memoryWeightSource(new Map(), "weights fed as graph inputs"));
  }

  override has(_key: string): boolean {
    return true;
  }

  override get(key: string, shape: readonly number[]): Tensor {
    const known = this.inputs.get(key);
    if (known) {
      if (known.rank !== shape.length || known.shape.some((d, i) => d !== shape[i])) {
        throw new WeightError(
          `weight "${key}" was first asked for as [${known.shape.join(", ")}] and now as [${shape.join(", ")}]`,
          key,
        );
      }
      return known;
    }
    const t = this.graph.input(this.inputPrefix + key, "float32", shape);
    this.inputs.set(key, t);
    return t;
  }

  /** The weights asked for so far, by key. */
  get shapes(): Map<string, readonly number[]> {
    return new Map([...this.inputs].map(([k, t]) => [k, t.shape]));
  }
}
