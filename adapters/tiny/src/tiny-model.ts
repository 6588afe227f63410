import type { ParamSet, VelocityFn } from "@edit-r1/core";
import { type Device, Graph, type Session, SessionCache } from "@edit-r1/engine";
import type { FluxTransformerConfig, LoraOptions, WeightSource } from "@edit-r1/models";
import { TinyAdapterError } from "./errors.js";
import type { TinyConditions } from "./tiny-conditions.js";
import { TINY_IMAGE_TOKENS, TINY_LATENT_SIZE, TINY_TOKEN_CHANNELS, tinyFluxConfig } from "./tiny-config.js";
import { buildTinyVelocity } from "./tiny-velocity.js";
import { type TinyWeights, tinyWeightSource } from "./tiny-weights.js";

/** LoRA factor inputs of the velocity graph are named `lora/<PEFT key>`. */
export const LORA_INPUT_PREFIX = "lora/";

/**
 * The tiny transformer with its frozen weights, compiled on demand: one velocity session per (batch size,
 * with/without LoRA), cached. The base weights are initializers; LoRA factors are inputs.
 */
export class TinyModel {
  readonly flux: FluxTransformerConfig;
  readonly source: WeightSource;
  private readonly sessions: SessionCache;

  constructor(
    readonly weights: TinyWeights,
    readonly options: { device?: Device; threads?: number; lora?: LoraOptions } = {},
  ) {
    this.flux = tinyFluxConfig(weights.config);
    this.source = tinyWeightSource(weights);
    this.sessions = new SessionCache({ device: options.device, threads: options.threads });
  }

  get vocabulary(): readonly string[] {
    return this.weights.config.vocabulary;
  }

  get textTokens(): number {
    return this.weights.config.textTokens;
  }

  /** The velocity of a batch under `params` (LoRA factors by PEFT key) or the base model when undefined. */
  velocity(conditions: TinyConditions, params: ParamSet | undefined, batch: number): VelocityFn {
    const session = this.session(batch, params !== undefined);
    const feeds: Record<string, Float32Array> = { context: conditions.context, text: conditions.text };
    if (params) for (const [k, v] of Object.entries(params)) feeds[LORA_INPUT_PREFIX + k] = v;
    return async (x, sigma) => {
      if (x.length !== batch * TINY_LATENT_SIZE) {
        throw new TinyAdapterError(
          `tiny velocity: ${x.length} latent values for a batch of ${batch} (needs ${batch * TINY_LATENT_SIZE}).`,
        );
      }
      const out = await (await session).run({ ...feeds, xt: x, t: new Float32Array(batch).fill(sigma) });
      return out.v as Float32Array;
    };
  }

  private session(batch: number, lora: boolean): Promise<Session> {
    if (lora && !this.options.lora) {
      throw new TinyAdapterError(
        "tiny model: LoRA parameters were given but the model was built without LoRA.",
      );
    }
    return this.sessions.get(`${batch}/${lora}`, () => {
      const graph = new Graph(`tiny-velocity-b${batch}`);
      const f = (name: string, shape: number[]) => graph.input(name, "float32", shape);
      const tokens = [batch, TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS];
      const { velocity } = buildTinyVelocity(
        graph,
        this.flux,
        this.source,
        {
          xt: f("xt", tokens),
          t: f("t", [batch]),
          context: f("context", tokens),
          text: f("text", [batch, this.textTokens, this.vocabulary.length]),
        },
        lora ? { lora: { ...this.options.lora!, inputPrefix: LORA_INPUT_PREFIX } } : {},
      );
      return { graph, outputs: { v: velocity } };
    });
  }

  dispose(): Promise<void> {
    return this.sessions.close();
  }
}
