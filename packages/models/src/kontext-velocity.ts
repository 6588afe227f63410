import { type Graph, ops, type Tensor } from "@edit-r1/engine";
import { withConditionTokens } from "./condition-tokens.js";
import type { FluxTransformerConfig } from "./flux-config.js";
import { buildFluxTransformer, type FluxTransformerOptions } from "./flux-transformer.js";
import type { GraphWeights } from "./graph-weights.js";
import type { LoraParameter } from "./lora.js";
import { ModelConfigError } from "./model-config-error.js";
import type { WeightSource } from "./weight-source.js";

/**
 * Position ids [(h/2)·(w/2), 3] of 2×2-packed image tokens for FLUX's 3-axis rotary embedding: (index, row,
 * column), row-major. The target image uses index 0 and Kontext's context image index 1, each on its own grid
 * from (0, 0). `h`, `w` are the latent grid before packing.
 */
export function imageTokenIds(h: number, w: number, index: number): Float32Array {
  if (h % 2 !== 0 || w % 2 !== 0)
    throw new ModelConfigError(`latent ${h}×${w} cannot be packed in 2×2 patches: both sides must be even`);
  const th = h / 2;
  const tw = w / 2;
  const ids = new Float32Array(th * tw * 3);
  for (let r = 0; r < th; r++) {
    for (let c = 0; c < tw; c++) {
      const t = r * tw + c;
      ids[t * 3] = index;
      ids[t * 3 + 1] = r;
      ids[t * 3 + 2] = c;
    }
  }
  return ids;
}

/** Symbolic inputs of Kontext's velocity for a batch of B samples. */
export interface KontextVelocityInputs {
  /** Noisy target tokens [B, N_target, in_channels] (2×2-packed latents). */
  latents: Tensor;
  /** Context-image tokens [B, N_context, in_channels] (the packed, scaled VAE latents of the source). */
  context: Tensor;
  /** Text sequence embeddings [B, T, joint_attention_dim] (T5's in FLUX). */
  text: Tensor;
  /** The pooled text embedding [B, pooled_projection_dim] (CLIP's in FLUX). */
  pooled: Tensor;
  /** σ in [0, 1], [B]. */
  timestep: Tensor;
  /** The distilled guidance [B]; required iff the config has guidance_embeds. */
  guidance?: Tensor | undefined;
}

export interface KontextVelocityOptions extends FluxTransformerOptions {
  /** Latent grids (before packing) of the target and of the context image: [h, w], both even. */
  targetGrid: readonly [number, number];
  contextGrid: readonly [number, number];
}

/**
 * FLUX.1-Kontext's velocity: target tokens then context tokens on the sequence axis, with position ids
 * (0, row, column) and (1, row, column), text ids zero, and only the target tokens' output kept (float32).
 * The editor, the trainable policy and the tiny embedded model all build through here, so rollouts see exactly
 * the editor's model and the tiny model is FLUX-Kontext's architecture.
 */
export function buildKontextVelocity(
  g: Graph,
  transformer: { config: FluxTransformerConfig; weights: WeightSource | GraphWeights },
  inputs: KontextVelocityInputs,
  options: KontextVelocityOptions,
): { velocity: Tensor; lora: LoraParameter[] } {
  const { config, weights } = transformer;
  const { targetGrid: _t, contextGrid: _c, ...transformerOptions } = options;
  const textTokens = inputs.text.shape[1]!;
  const ids = new Float32Array([
    ...imageTokenIds(options.targetGrid[0], options.targetGrid[1], 0),
    ...imageTokenIds(options.contextGrid[0], options.contextGrid[1], 1),
  ]);
  let lora: LoraParameter[] = [];
  const sample = withConditionTokens(inputs.latents, [inputs.context], (joint) => {
    const out = buildFluxTransformer(
      g,
      config,
      weights,
      {
        hiddenStates: joint,
        encoderHiddenStates: inputs.text,
        pooledProjections: inputs.pooled,
        timestep: inputs.timestep,
        guidance: inputs.guidance,
        // A grid that does not match its token count fails here with the transformer's shape message.
        imgIds: g.constant(ids, [ids.length / 3, 3]),
        txtIds: g.constant(new Float32Array(textTokens * 3), [textTokens, 3]),
      },
      transformerOptions,
    );
    lora = out.lora;
    return out.sample;
  });
  return { velocity: ops.cast(sample, "float32"), lora };
}
