import { imageTokenIds, withConditionTokens } from "@edit-r1/adapter-kit";
import { type Graph, ops, type Tensor } from "@edit-r1/engine";
import {
  buildFluxTransformer,
  type ComputeDType,
  type FluxTransformerConfig,
  type GraphWeights,
  type LoraOptions,
  type LoraParameter,
  type WeightSource,
} from "@edit-r1/models";

/** Symbolic inputs of Kontext's velocity for a batch of B samples. */
export interface KontextVelocityInputs {
  /** Noisy target tokens [B, N_target, in_channels] (2×2-packed latents). */
  latents: Tensor;
  /** Context-image tokens [B, N_context, in_channels] (the packed, scaled VAE latents of the source). */
  context: Tensor;
  /** T5 sequence embeddings [B, T, joint_attention_dim]. */
  text: Tensor;
  /** CLIP pooled embedding [B, pooled_projection_dim]. */
  pooled: Tensor;
  /** σ in [0, 1], [B]. */
  timestep: Tensor;
  /** The distilled guidance [B]; required iff the config has guidance_embeds. */
  guidance?: Tensor | undefined;
}

export interface KontextVelocityOptions {
  /** Latent grids (before packing) of the target and of the context image: [h, w], both even. */
  targetGrid: readonly [number, number];
  contextGrid: readonly [number, number];
  /** Compute dtype of the transformer (default float32). */
  dtype?: ComputeDType | undefined;
  /** LoRA on the transformer's Linear layers (factor inputs, or tensors the caller owns). */
  lora?: LoraOptions | undefined;
}

/**
 * FLUX.1-Kontext's velocity: target tokens then context tokens on the sequence axis, with position ids
 * (0, row, column) and (1, row, column), text ids zero, and only the target tokens' output kept (float32).
 * The editor and the trainable policy both build through here, so rollouts see exactly the editor's model.
 */
export function buildKontextVelocity(
  g: Graph,
  transformer: { config: FluxTransformerConfig; weights: WeightSource | GraphWeights },
  inputs: KontextVelocityInputs,
  options: KontextVelocityOptions,
): { velocity: Tensor; lora: LoraParameter[] } {
  const { config, weights } = transformer;
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
      {
        ...(options.dtype ? { dtype: options.dtype } : {}),
        ...(options.lora ? { lora: options.lora } : {}),
      },
    );
    lora = out.lora;
    return out.sample;
  });
  return { velocity: ops.cast(sample, "float32"), lora };
}
