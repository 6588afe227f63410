import { type DType, type Graph, ops, type Tensor } from "@edit-r1/engine";
import { isWeightParts, type WeightEntry, WeightError, type WeightSource } from "./weight-source.js";

/**
 * The floating-point dtypes a model graph can compute in. bfloat16 graphs run where the provider has the kernels
 * (CUDA; the engine's `lower(…, { provider })` keeps the ops it lacks in float32); the CPU provider has almost no
 * bfloat16 math.
 */
export type ComputeDType = "float32" | "float16" | "bfloat16";

export interface GraphWeightsOptions {
  /** Dtype the graph computes in; stored weights of another dtype are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /** Prepended to every initializer name, so two models with overlapping keys can share one graph. */
  initializerPrefix?: string;
}

const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;
const FLOATS: ReadonlySet<DType> = new Set(["float32", "float16", "bfloat16", "float64"]);

/**
 * A weight source bound to one graph: each weight becomes one initializer (external data stays external) the
 * first time it is asked for, checked against the shape the architecture expects, and cast to the compute
 * dtype. Later requests return the same tensor, so several forward passes built into one graph (v_θ, v_old,
 * v_ref) share their frozen weights.
 */
export class GraphWeights {
  private readonly cache = new Map<string, Tensor>();
  readonly dtype: ComputeDType;
  private readonly prefix: string;

  constructor(
    readonly graph: Graph,
    readonly source: WeightSource,
    options: GraphWeightsOptions = {},
  ) {
    this.dtype = options.dtype ?? "float32";
    this.prefix = options.initializerPrefix ?? "";
  }

  /** Whether the source has `key` (for optional modules such as the guidance embedder). */
  has(key: string): boolean {
    return this.source.get(key) !== undefined;
  }

  /** The weight `key` as a tensor of the compute dtype; fails naming the key unless its shape is `shape`. */
  get(key: string, shape: readonly number[]): Tensor {
    const cached = this.cache.get(key);
    if (cached) {
      if (!sameShape(cached.shape, shape)) throw this.shapeError(key, shape, cached.shape);
      return cached;
    }
    const entry = this.source.get(key);
    if (!entry) {
      throw new WeightError(
        `${this.source.description}: weight "${key}" (expected shape ${fmt(shape)}) is missing. ` +
          `Check that the checkpoint matches the model config${hintFor(key, this.source)}.`,
        key,
      );
    }
    if (!sameShape(entry.shape, shape)) throw this.shapeError(key, shape, entry.shape);
    const t = this.materialize(key, entry);
    this.cache.set(key, t);
    return t;
  }

  private materialize(key: string, entry: WeightEntry): Tensor {
    if (!FLOATS.has(entry.dtype)) {
      throw new WeightError(
        `${this.source.description}: weight "${key}" is ${entry.dtype}; model weights must be floating point.`,
        key,
      );
    }
    const data = entry.data;
    if (isWeightParts(data)) {
      const parts = data.map((part, i) => this.leaf(`${key}#${i}`, part));
      return parts.length === 1 ? parts[0]! : ops.concat(parts, 0);
    }
    return this.leaf(key, entry);
  }

  private leaf(name: string, entry: WeightEntry): Tensor {
    if (isWeightParts(entry.data)) return this.materialize(name, entry);
    const t = this.graph.initializer(this.prefix + name, entry.dtype, entry.shape, entry.data);
    return ops.cast(t, this.dtype);
  }

  private shapeError(key: string, expected: readonly number[], found: readonly number[]): WeightError {
    return new WeightError(
      `${this.source.description}: weight "${key}" has shape ${fmt(found)} but the model config needs ${fmt(expected)}. ` +
        "Check that config.json belongs to this checkpoint.",
      key,
    );
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function hintFor(key: string, source: WeightSource): string {
  const names = source.names();
  if (names.some((n) => n.startsWith("double_blocks.") || n.startsWith("final_layer."))) {
    return " (these look like BFL single-file keys: wrap the source with fluxBflWeightSource)";
  }
  const prefixed = names.find((n) => n.endsWith(`.${key}`) || key.endsWith(`.${n}`));
  if (prefixed) return ` (the source has "${prefixed}": strip or add the key prefix)`;
  return "";
}

const bound = new WeakMap<Graph, Map<WeightSource, GraphWeights>>();

/**
 * The `GraphWeights` of `source` in `graph`, created once per (graph, source) pair, so a builder called
 * several times on the same graph reuses the same initializers.
 */
export function graphWeights(
  graph: Graph,
  source: WeightSource | GraphWeights,
  options: GraphWeightsOptions = {},
) {
  if (source instanceof GraphWeights) {
    if (source.graph !== graph) throw new WeightError("GraphWeights belong to another graph.", "");
    return source;
  }
  let perGraph = bound.get(graph);
  if (!perGraph) bound.set(graph, (perGraph = new Map()));
  let w = perGraph.get(source);
  if (!w) {
    w = new GraphWeights(graph, source, options);
    perGraph.set(source, w);
  } else if (options.dtype !== undefined && options.dtype !== w.dtype) {
    throw new WeightError(
      `${source.description}: already bound to this graph with dtype ${w.dtype}, now asked for ${options.dtype}. ` +
        "Use one compute dtype per source and graph.",
      "",
    );
  }
  return w;
}
