import { type Graph, GraphError, type nn, type Tensor } from "@edit-r1/engine";

/** The Edit-R1 LoRA target modules (PEFT `target_modules`); in FLUX they also match the single blocks' to_q/k/v. */
export const EDIT_R1_LORA_TARGETS: readonly string[] = [
  "attn.to_q",
  "attn.to_k",
  "attn.to_v",
  "attn.to_out.0",
  "attn.add_q_proj",
  "attn.add_k_proj",
  "attn.add_v_proj",
  "attn.to_add_out",
];

export interface LoraOptions {
  rank: number;
  /** PEFT lora_alpha; the update is scaled by alpha / rank. Default: rank (scale 1). Edit-R1 uses r 32, alpha 64. */
  alpha?: number;
  /** Module names, matched like PEFT: a module is wrapped when its name equals a target or ends with "." + target. */
  targets?: readonly string[];
  /**
   * Prepended to each graph input name. Factor inputs are named by their PEFT key
   * (`transformer_blocks.0.attn.to_q.lora_A.weight`), so two adapters in one graph (θ and old) need distinct prefixes.
   */
  inputPrefix?: string;
  /**
   * Factor tensors the caller already owns, by PEFT key (e.g. inputs a generic trainer created, or a
   * computed tensor). When given, targeted modules read their factors from here instead of creating graph
   * inputs; a targeted module without both keys is an error.
   */
  tensors?: Readonly<Record<string, Tensor>>;
}

/** One LoRA factor: a graph input to feed, named after its PEFT key. */
export interface LoraParameter {
  /** PEFT key, e.g. `transformer_blocks.0.attn.to_q.lora_A.weight` (A is [rank, in], B is [out, rank]). */
  key: string;
  /** The graph input holding it (its name is `inputPrefix + key`). */
  input: Tensor;
}

/** Creates LoRA factor inputs for the modules a builder asks about, and records them in build order. */
export class LoraSet {
  readonly parameters: LoraParameter[] = [];
  readonly scale: number;
  private readonly targets: readonly string[];
  private readonly prefix: string;

  constructor(
    readonly graph: Graph,
    readonly options: LoraOptions,
  ) {
    const { rank, alpha = rank } = options;
    if (!Number.isInteger(rank) || rank <= 0) {
      throw new GraphError(`LoRA rank must be a positive integer, got ${rank}`);
    }
    if (!(alpha > 0)) throw new GraphError(`LoRA alpha must be positive, got ${alpha}`);
    this.scale = alpha / rank;
    this.targets = options.targets ?? EDIT_R1_LORA_TARGETS;
    this.prefix = options.inputPrefix ?? "";
  }

  matches(module: string): boolean {
    return this.targets.some((t) => module === t || module.endsWith(`.${t}`));
  }

  /** LoRA factors for `module` (a PEFT module name) of a Linear in→out, or undefined when it is not targeted. */
  factors(module: string, inFeatures: number, outFeatures: number): nn.LoraFactors | undefined {
    if (!this.matches(module)) return undefined;
    const r = this.options.rank;
    const A = this.input(`${module}.lora_A.weight`, [r, inFeatures]);
    const B = this.input(`${module}.lora_B.weight`, [outFeatures, r]);
    return { A, B, scale: this.scale };
  }

  // Factors are float32 inputs whatever the compute dtype (Edit-R1 keeps LoRA in fp32); the layer casts them.
  private input(key: string, shape: number[]): Tensor {
    const given = this.options.tensors;
    if (given) {
      const t = given[key];
      if (!t) {
        throw new GraphError(
          `LoRA factor "${key}" [${shape.join(",")}] is missing from options.tensors; ` +
            "pass a tensor for every targeted module's lora_A and lora_B (or narrow options.targets).",
        );
      }
      if (t.graph !== this.graph || t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new GraphError(
          `LoRA factor "${key}" from options.tensors is ${t}, expected shape [${shape.join(",")}] in this graph.`,
        );
      }
      this.parameters.push({ key, input: t });
      return t;
    }
    const input = this.graph.input(this.prefix + key, "float32", shape);
    this.parameters.push({ key, input });
    return input;
  }
}
