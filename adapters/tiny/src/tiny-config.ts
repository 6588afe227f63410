import { type FluxTransformerConfig, parseFluxTransformerConfig } from "@edit-r1/models";
import { MAX_INSTRUCTION_TOKENS, VOCABULARY } from "@edit-r1/shapes";

/**
 * Side of the only image size the tiny model works at: the shapes world's smallest canvas. At 16×16 a sample is
 * 64 image + 64 context + 20 text tokens, against 532 at 32×32, which makes pretraining about ten times cheaper
 * per sample and an Edit-R1 step fast enough for tens of steps in `pnpm train` (measured, README "Why").
 */
export const TINY_IMAGE_SIZE = 16;
/** Pixels per packed token side: 2×2 RGB pixels make one 12-channel token (FLUX's 2×2 latent packing). */
export const TINY_PATCH = 2;
/** Channels per token: 3 colours × 2 × 2 pixels. */
export const TINY_TOKEN_CHANNELS = 3 * TINY_PATCH * TINY_PATCH;
/** Tokens per image side and per image. */
export const TINY_GRID = TINY_IMAGE_SIZE / TINY_PATCH;
export const TINY_IMAGE_TOKENS = TINY_GRID * TINY_GRID;
/** Latent values per sample: the packed noisy/target image. */
export const TINY_LATENT_SIZE = TINY_IMAGE_TOKENS * TINY_TOKEN_CHANNELS;
/** Text tokens per instruction (the shapes tokenizer's padded length). */
export const TINY_TEXT_TOKENS = MAX_INSTRUCTION_TOKENS;

/**
 * The diffusers-style config.json of the tiny transformer. It is FLUX-Kontext's architecture with every width
 * cut down: 12 input channels (packed RGB instead of packed VAE latents), joint_attention_dim = the word
 * embedding width, pooled_projection_dim = the same width (the pooled vector is the mean word embedding), no
 * guidance embedding. `axes_dims_rope` must sum to attention_head_dim.
 *
 * Sized by measurement (README "Why"): at this size a batch-8 forward and a training step are fast enough on
 * two CPU cores for `pnpm train` to run in minutes.
 */
export const TINY_TRANSFORMER_CONFIG_JSON = {
  _class_name: "FluxTransformer2DModel",
  patch_size: 1,
  in_channels: TINY_TOKEN_CHANNELS,
  out_channels: null,
  num_layers: 2,
  num_single_layers: 2,
  attention_head_dim: 32,
  num_attention_heads: 4,
  joint_attention_dim: 128,
  pooled_projection_dim: 128,
  guidance_embeds: false,
  axes_dims_rope: [8, 12, 12],
} as const;

/** What `weights/config.json` holds: the transformer config plus the tiny model's own text and image settings. */
export interface TinyModelConfig {
  transformer: Record<string, unknown>;
  /** The word list the text embedding rows follow (shapes VOCABULARY at training time). */
  vocabulary: string[];
  textTokens: number;
  imageSize: number;
  /** How the shipped weights were made (command, steps, seed, final loss), for the record. */
  training?: Record<string, unknown>;
}

export function defaultTinyModelConfig(
  transformer: Record<string, unknown> = TINY_TRANSFORMER_CONFIG_JSON,
): TinyModelConfig {
  return {
    transformer: { ...transformer },
    vocabulary: [...VOCABULARY],
    textTokens: TINY_TEXT_TOKENS,
    imageSize: TINY_IMAGE_SIZE,
  };
}

export function tinyFluxConfig(config: TinyModelConfig, source = "config.json"): FluxTransformerConfig {
  return parseFluxTransformerConfig(config.transformer, source);
}
