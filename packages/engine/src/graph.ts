import { type DType, numel } from "./dtype.js";
import { EditR1Error } from "./errors.js";

/**
 * The engine's intermediate representation: a static-shape dataflow graph whose nodes are a closed set of
 * ONNX primitive ops (see `ops.ts`). Model code builds graphs through the op functions; autodiff adds nodes
 * to the same graph; lowering turns it into an ONNX model for onnxruntime.
 *
 * Shapes and dtypes are known at build time, so every mismatch fails while the graph is built, naming the
 * op, its module path and the offending shapes.
 */

export type Shape = readonly number[];

/** Where the data of a leaf tensor comes from. */
export type TensorSource =
  /** Fed at run time by name. */
  | { kind: "input"; name: string }
  /** A frozen weight: stored in the model (inline data) or referenced as external data (`ExternalData`). */
  | { kind: "initializer"; name: string; data: InitializerData }
  /** A small literal baked into the graph. */
  | { kind: "constant"; data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array }
  /** Produced by a node. */
  | { kind: "node"; node: Node; index: number };

/** Weight bytes referenced in place inside a file (a .safetensors), never copied. */
export interface ExternalData {
  path: string;
  /** Absolute byte offset of the tensor's first byte in the file. */
  offset: number;
  length: number;
}

export type InitializerData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Uint16Array
  | ExternalData;

export type AttrValue = number | string | readonly number[] | readonly string[];
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface Node {
  readonly id: number;
  /** ONNX op type, e.g. "MatMul". */
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly attrs: Attrs;
  readonly outputs: readonly Tensor[];
  /** Module path at creation, e.g. "transformer_blocks.0/attn/to_q"; becomes the ONNX node name. */
  readonly scope: string;
  /** Set inside `graph.recompute(...)`: autodiff recomputes this node in the backward pass instead of keeping it. */
  readonly recompute: number | undefined;
}

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Shape,
    readonly dtype: DType,
    readonly source: TensorSource,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return numel(this.shape);
  }

  /** The node that produced this tensor, if any. */
  get producer(): Node | undefined {
    return this.source.kind === "node" ? this.source.node : undefined;
  }

  toString(): string {
    return `Tensor#${this.id}<${this.dtype}>[${this.shape.join(",")}]`;
  }
}

/** Build-time error: wrong shapes, dtypes or arguments, naming the op, module path and shapes. */
export class GraphError extends EditR1Error {
  override name = "GraphError";
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Tensor[] = [];
  readonly initializers: Tensor[] = [];
  readonly constants: Tensor[] = [];
  private nextId = 0;
  private scopes: string[] = [];
  private recomputeRegion: number | undefined;
  private recomputeCounter = 0;
  private readonly recomputeParents = new Map<number, number | undefined>();
  private readonly names = new Set<string>();

  constructor(readonly name = "graph") {}

  /** A run-time input. */
  input(name: string, dtype: DType, shape: Shape): Tensor {
    this.claimName(name, "input");
    const t = this.leaf(shape, dtype, { kind: "input", name });
    this.inputs.push(t);
    return t;
  }

  /** A frozen weight (inline typed array or external data in a file). */
  initializer(name: string, dtype: DType, shape: Shape, data: InitializerData): Tensor {
    this.claimName(name, "initializer");
    if (!("path" in data) && data.length !== numel(shape)) {
      throw new GraphError(
        `initializer "${name}": data has ${data.length} elements but shape [${shape.join(",")}] needs ${numel(shape)}`,
      );
    }
    const t = this.leaf(shape, dtype, { kind: "initializer", name, data });
    this.initializers.push(t);
    return t;
  }

  /** A literal. Numbers become scalars of the given dtype. */
  constant(
    value: number | readonly number[] | Float32Array | Float64Array | BigInt64Array | Int32Array,
    shape?: Shape,
    dtype: DType = "float32",
  ): Tensor {
    let data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
    if (typeof value === "number" || Array.isArray(value)) {
      const values = typeof value === "number" ? [value] : (value as readonly number[]);
      data =
        dtype === "int64"
          ? BigInt64Array.from(values, (v) => BigInt(v))
          : dtype === "int32"
            ? Int32Array.from(values)
            : dtype === "float64"
              ? Float64Array.from(values)
              : dtype === "bool" || dtype === "uint8"
                ? Uint8Array.from(values)
                : Float32Array.from(values);
    } else {
      data = value as Float32Array | Float64Array | BigInt64Array | Int32Array;
    }
    const s = shape ?? (typeof value === "number" ? [] : [data.length]);
    if (numel(s) !== data.length) {
      throw new GraphError(`constant: ${data.length} values do not fill shape [${s.join(",")}]`);
    }
    const t = this.leaf(s, dtype, { kind: "constant", data });
    this.constants.push(t);
    return t;
  }

  /** Runs `fn` with `name` appended to the module path, so node names read like the model's modules. */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** The region enclosing recompute region `region` (undefined for an outermost region). */
  recomputeParent(region: number): number | undefined {
    return this.recomputeParents.get(region);
  }

  get currentScope(): string {
    return this.scopes.join("/");
  }

  /**
   * Marks the nodes built inside `fn` as one gradient-checkpointing region: autodiff keeps only the region's
   * inputs and recomputes its interior during the backward pass. Regions nest: an inner region is part of the
   * outer one's interior (recomputed with it), and its own backward recomputes the inner interior once more,
   * so the inner activations never stay alive from the outer recomputation until the inner backward.
   */
  recompute<T>(fn: () => T): T {
    const outer = this.recomputeRegion;
    this.recomputeRegion = ++this.recomputeCounter;
    this.recomputeParents.set(this.recomputeRegion, outer);
    try {
      return fn();
    } finally {
      this.recomputeRegion = outer;
    }
  }

  /**
   * Appends a node. Op functions call this after checking shapes; `outputs` gives each output's shape and dtype.
   * Inputs must belong to this graph.
   */
  addNode(
    op: string,
    inputs: readonly Tensor[],
    attrs: Attrs,
    outputs: readonly { shape: Shape; dtype: DType }[],
  ) {
    for (const t of inputs) {
      if (t.graph !== this)
        throw new GraphError(`${op} at "${this.currentScope}": input ${t} belongs to another graph`);
    }
    const outs: Tensor[] = [];
    const node: Node = {
      id: this.nodes.length,
      op,
      inputs: [...inputs],
      attrs,
      outputs: outs,
      scope: this.currentScope,
      recompute: this.recomputeRegion,
    };
    outputs.forEach((o, index) => {
      outs.push(new Tensor(this, this.nextId++, [...o.shape], o.dtype, { kind: "node", node, index }));
    });
    this.nodes.push(node);
    return outs;
  }

  private leaf(shape: Shape, dtype: DType, source: TensorSource): Tensor {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0)
        throw new GraphError(`bad shape [${shape.join(",")}]: dims must be integers ≥ 0`);
    }
    return new Tensor(this, this.nextId++, [...shape], dtype, source);
  }

  private claimName(name: string, what: string): void {
    if (!name) throw new GraphError(`${what} needs a non-empty name`);
    if (this.names.has(name))
      throw new GraphError(`${what} "${name}": the name is already used in graph "${this.name}"`);
    this.names.add(name);
  }
}
