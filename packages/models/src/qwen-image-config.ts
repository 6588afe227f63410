import { configReader, ropeAxes } from "./config-reader.js";
import { ModelConfigError } from "./model-config-error.js";

/** The diffusers `transformer/config.json` of a QwenImageTransformer2DModel (Qwen-Image, -Edit, -Edit-2509). */
export interface QwenImageTransformerConfig {
  patchSize: number;
  /** Width of a packed latent token (16 latent channels · 2 · 2 = 64 in the released models). */
  inChannels: number;
  /** Latent channels per output patch position; proj_out emits patchSize² · outChannels. */
  outChannels: number;
  numLayers: number;
  attentionHeadDim: number;
  numAttentionHeads: number;
  /** Width of the text-encoder hidden states (3584 for Qwen2.5-VL-7B). */
  jointAttentionDim: number;
  axesDimsRope: [number, number, number];
  /**
   * Edit-2511's `zero_cond_t`: the source images' tokens are modulated with the timestep embedding of t = 0,
   * the noisy target's (and the text's) with the real t.
   */
  zeroCondT: boolean;
}

const DEFAULTS: Record<string, unknown> = {
  patch_size: 2,
  in_channels: 64,
  out_channels: 16,
  num_layers: 60,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 3584,
  guidance_embeds: false,
  axes_dims_rope: [16, 56, 56],
  zero_cond_t: false,
  use_additional_t_cond: false,
  use_layer3d_rope: false,
};

// Flags of other releases (guidance-distilled and layered variants) that change the forward pass; this builder
// implements Qwen-Image, -Edit, -Edit-2509 and -Edit-2511 (zero_cond_t), where these are false.
const UNSUPPORTED_FLAGS = ["guidance_embeds", "use_additional_t_cond", "use_layer3d_rope"];

/** Reads a diffusers config.json object, filling diffusers' defaults; `source` names the file in errors. */
export function parseQwenImageTransformerConfig(
  json: Record<string, unknown>,
  source = "config.json",
): QwenImageTransformerConfig {
  const { get, int } = configReader(json, DEFAULTS, source);
  for (const flag of UNSUPPORTED_FLAGS) {
    if (get(flag)) {
      throw new ModelConfigError(
        `${source}: "${flag}" is ${JSON.stringify(get(flag))}; the Qwen-Image builder supports Qwen-Image, ` +
          "-Edit, -Edit-2509 and -Edit-2511, whose configs have it false.",
      );
    }
  }
  const headDim = int("attention_head_dim");
  const axes = ropeAxes(get("axes_dims_rope"), headDim, source);
  const inChannels = int("in_channels");
  // diffusers: out_channels or in_channels.
  const outChannels = get("out_channels") == null ? inChannels : int("out_channels");
  return {
    patchSize: int("patch_size"),
    inChannels,
    outChannels,
    numLayers: int("num_layers"),
    attentionHeadDim: headDim,
    numAttentionHeads: int("num_attention_heads"),
    jointAttentionDim: int("joint_attention_dim"),
    axesDimsRope: axes,
    zeroCondT: get("zero_cond_t") === true,
  };
}
