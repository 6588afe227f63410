import { type Graph, ops, type Tensor } from "@edit-r1/engine";
import { withConditionTokens } from "./condition-tokens.js";
import type { GraphWeights } from "./graph-weights.js";
import type { LoraParameter } from "./lora.js";
import type { QwenImageTransformerConfig } from "./qwen-image-config.js";
import {
  buildQwenImageTransformer,
  type QwenImageShape,
  type QwenImageTransformerOptions,
} from "./qwen-image-transformer.js";
import type { WeightSource } from "./weight-source.js";

export interface QwenImageEditVelocityInputs {
  /** Noisy target tokens [B, N_target, in_channels] (2×2-packed latents). */
  latents: Tensor;
  /** Every source image's packed, normalised VAE latents, concatenated: [B, N_sources, in_channels]. */
  sources: Tensor;
  /** Qwen2.5-VL hidden states [B, L, joint_attention_dim]. */
  text: Tensor;
  /** [B, L], 1 = token, 0 = padding; omit when no row is padded. */
  textMask?: Tensor | undefined;
  /** σ in [0, 1], [B]. */
  timestep: Tensor;
}

export interface QwenImageEditVelocityOptions extends QwenImageTransformerOptions {
  /** img_shapes: the target (1, h/2, w/2) first, then each source's. */
  imgShapes: readonly QwenImageShape[];
}

/**
 * Qwen-Image-Edit's velocity (v1, 2509, 2511): target tokens then every source image's tokens on the sequence
 * axis, img_shapes [target, ...sources] for the rotary positions, only the target tokens' output kept (float32).
 * The editor and the trainable policy both build through here, so rollouts see exactly the editor's model.
 */
export function buildQwenImageEditVelocity(
  g: Graph,
  transformer: { config: QwenImageTransformerConfig; weights: WeightSource | GraphWeights },
  inputs: QwenImageEditVelocityInputs,
  options: QwenImageEditVelocityOptions,
): { velocity: Tensor; lora: LoraParameter[] } {
  const { imgShapes, ...transformerOptions } = options;
  let lora: LoraParameter[] = [];
  const conditions = inputs.sources.shape[1]! > 0 ? [inputs.sources] : [];
  const sample = withConditionTokens(inputs.latents, conditions, (joint) => {
    const out = buildQwenImageTransformer(
      g,
      transformer.config,
      transformer.weights,
      {
        hiddenStates: joint,
        encoderHiddenStates: inputs.text,
        encoderHiddenStatesMask: inputs.textMask,
        timestep: inputs.timestep,
        imgShapes,
      },
      transformerOptions,
    );
    lora = out.lora;
    return out.sample;
  });
  return { velocity: ops.cast(sample, "float32"), lora };
}
