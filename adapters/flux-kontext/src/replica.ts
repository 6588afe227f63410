import { join } from "node:path";
import {
  checkReplicaDType,
  checkReplicaSeed,
  type ReplicaDType,
  recordWeightShapes,
  replicaConfigNumber,
  replicaTensors,
  type WeightShapes,
  writeConfigJson,
  writeReplicaSafetensors,
  writeShardedSafetensors,
} from "@edit-r1/adapter-kit";
import {
  type AutoencoderKLConfig,
  buildAutoencoderKLDecoder,
  buildAutoencoderKLEncoder,
  buildClipTextModel,
  buildFluxTransformer,
  buildT5Encoder,
  type ClipTextConfig,
  clipReplicaVocab,
  clipTextInputs,
  type FluxTransformerConfig,
  fluxTransformerInputs,
  parseAutoencoderKLConfig,
  parseClipTextConfig,
  parseFluxTransformerConfig,
  parseT5EncoderConfig,
  T5_REPLICA_PIECES,
  type T5EncoderConfig,
  writeClipReplicaTokenizer,
  writeT5ReplicaTokenizer,
} from "@edit-r1/models";

/**
 * A tiny random-weight FLUX.1-Kontext-dev pipeline in the diffusers layout of black-forest-labs/FLUX.1-Kontext-dev
 * (what `openFluxKontextModel` and diffusers' FluxKontextPipeline read): model_index.json; transformer/ sharded in
 * three files with its index; vae/ (AutoencoderKL with FLUX's scale and shift, no quant convs); text_encoder/
 * (CLIPTextModel, one file); text_encoder_2/ (T5EncoderModel, two shards and the index); tokenizer/ (CLIP
 * vocab.json + merges.txt) and tokenizer_2/ (T5 tokenizer.json); scheduler/. The configs have the released keys at
 * tiny sizes (about 0.5 MB in all). Every weight key and shape is recorded from this repository's own builders
 * (transformer, VAE encoder and decoder, CLIP, T5) run on those configs, so they cannot drift from what the loaders
 * read. The root-level BFL files of the repository (flux1-kontext-dev.safetensors, ae.safetensors) are not written.
 */

export interface FluxKontextReplicaOptions {
  /** Seed of every weight (default 0); the same seed writes the same bytes. */
  seed?: number;
  /** Stored weight dtype: bfloat16 (default, as released) or float32. */
  dtype?: ReplicaDType;
}

type Json = Record<string, unknown>;

const DIFFUSERS_VERSION = "0.35.0.dev0";
const TRANSFORMERS_VERSION = "4.53.1";

/** model_index.json of FLUX.1-Kontext-dev. */
export const FLUX_KONTEXT_MODEL_INDEX: Json = {
  _class_name: "FluxKontextPipeline",
  _diffusers_version: DIFFUSERS_VERSION,
  feature_extractor: [null, null],
  image_encoder: [null, null],
  scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
  text_encoder: ["transformers", "CLIPTextModel"],
  text_encoder_2: ["transformers", "T5EncoderModel"],
  tokenizer: ["transformers", "CLIPTokenizer"],
  tokenizer_2: ["transformers", "T5TokenizerFast"],
  transformer: ["diffusers", "FluxTransformer2DModel"],
  vae: ["diffusers", "AutoencoderKL"],
};

/** scheduler/scheduler_config.json of FLUX.1-Kontext-dev, as released. */
export const FLUX_KONTEXT_SCHEDULER_CONFIG: Json = {
  _class_name: "FlowMatchEulerDiscreteScheduler",
  _diffusers_version: DIFFUSERS_VERSION,
  base_image_seq_len: 256,
  base_shift: 0.5,
  invert_sigmas: false,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  num_train_timesteps: 1000,
  shift: 3.0,
  shift_terminal: null,
  stochastic_sampling: false,
  time_shift_type: "exponential",
  use_beta_sigmas: false,
  use_dynamic_shifting: true,
  use_exponential_sigmas: false,
  use_karras_sigmas: false,
};

/** text_encoder/config.json: CLIP-L's text tower (CLIPTextModel) at a tiny size, over the replica's vocabulary. */
function clipConfig(dtype: ReplicaDType): Json {
  return {
    architectures: ["CLIPTextModel"],
    attention_dropout: 0.0,
    // The legacy ids of the OpenAI configs, as released: eos_token_id 2 makes transformers pool at the argmax id.
    bos_token_id: 0,
    dropout: 0.0,
    eos_token_id: 2,
    hidden_act: "quick_gelu",
    hidden_size: 32,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: 64,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: "clip_text_model",
    num_attention_heads: 2,
    num_hidden_layers: 2,
    pad_token_id: 1,
    projection_dim: 32,
    torch_dtype: dtype,
    transformers_version: TRANSFORMERS_VERSION,
    vocab_size: Object.keys(clipReplicaVocab()).length,
  };
}

/** text_encoder_2/config.json: T5 v1.1 (gated GELU, untied head) at a tiny size, over the replica's pieces. */
function t5Config(dtype: ReplicaDType): Json {
  return {
    architectures: ["T5EncoderModel"],
    classifier_dropout: 0.0,
    d_ff: 48,
    d_kv: 8,
    d_model: 32,
    decoder_start_token_id: 0,
    dense_act_fn: "gelu_new",
    dropout_rate: 0.1,
    eos_token_id: 1,
    feed_forward_proj: "gated-gelu",
    initializer_factor: 1.0,
    is_encoder_decoder: true,
    is_gated_act: true,
    layer_norm_epsilon: 1e-6,
    model_type: "t5",
    num_decoder_layers: 2,
    num_heads: 4,
    num_layers: 2,
    output_past: true,
    pad_token_id: 0,
    relative_attention_max_distance: 128,
    relative_attention_num_buckets: 32,
    tie_word_embeddings: false,
    torch_dtype: dtype,
    transformers_version: TRANSFORMERS_VERSION,
    // Covers every piece, rounded up as the real 32128 rounds the tokenizer's 32100.
    vocab_size: Math.ceil(T5_REPLICA_PIECES.length / 8) * 8,
  };
}

/** transformer/config.json: FLUX.1-Kontext-dev's FluxTransformer2DModel at a tiny size. */
function transformerConfig(textHidden: number, pooledDim: number, latentChannels: number): Json {
  return {
    _class_name: "FluxTransformer2DModel",
    _diffusers_version: DIFFUSERS_VERSION,
    attention_head_dim: 16,
    axes_dims_rope: [4, 6, 6],
    guidance_embeds: true,
    in_channels: latentChannels * 4,
    joint_attention_dim: textHidden,
    num_attention_heads: 2,
    num_layers: 2,
    num_single_layers: 2,
    out_channels: null,
    patch_size: 1,
    pooled_projection_dim: pooledDim,
  };
}

/** vae/config.json: FLUX's AutoencoderKL (16 latent channels, scale 0.3611, shift 0.1159, no quant convs). */
function vaeConfig(): Json {
  const blocks = [8, 16, 16, 16];
  return {
    _class_name: "AutoencoderKL",
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: "silu",
    block_out_channels: blocks,
    down_block_types: blocks.map(() => "DownEncoderBlock2D"),
    force_upcast: true,
    in_channels: 3,
    latent_channels: 16,
    latents_mean: null,
    latents_std: null,
    layers_per_block: 1,
    mid_block_add_attention: true,
    norm_num_groups: 4,
    out_channels: 3,
    sample_size: 1024,
    scaling_factor: 0.3611,
    shift_factor: 0.1159,
    up_block_types: blocks.map(() => "UpDecoderBlock2D"),
    use_post_quant_conv: false,
    use_quant_conv: false,
  };
}

/** The transformer weights a checkpoint of `config` holds: what buildFluxTransformer reads. */
export function fluxTransformerWeightShapes(config: FluxTransformerConfig): WeightShapes {
  return recordWeightShapes("flux-transformer-keys", (g, weights) => {
    const inputs = fluxTransformerInputs(g, config, { batch: 1, imageTokens: 2, textTokens: 2 });
    buildFluxTransformer(g, config, weights, inputs);
  });
}

/** The VAE weights a checkpoint of `config` holds: what the AutoencoderKL encoder and decoder builders read. */
export function autoencoderKLWeightShapes(config: AutoencoderKLConfig): WeightShapes {
  return recordWeightShapes("autoencoder-kl-keys", (g, weights) => {
    const side = 2 ** (config.blockOutChannels.length - 1);
    buildAutoencoderKLEncoder(
      g,
      config,
      weights,
      g.input("image", "float32", [1, config.inChannels, side, side]),
    );
    buildAutoencoderKLDecoder(
      g,
      config,
      weights,
      g.input("latent", "float32", [1, config.latentChannels, 1, 1]),
    );
  });
}

/** The CLIPTextModel weights (`text_model.*`) a checkpoint of `config` holds: what buildClipTextModel reads. */
export function clipTextWeightShapes(config: ClipTextConfig): WeightShapes {
  return recordWeightShapes("clip-text-keys", (g, weights) => {
    buildClipTextModel(g, config, weights, clipTextInputs(g, { batch: 1, length: 2 }));
  });
}

/**
 * The T5EncoderModel weights a checkpoint of `config` holds: what buildT5Encoder reads, with the token
 * embedding stored as `shared.weight` (transformers saves it there and drops the tied `encoder.embed_tokens`).
 */
export function t5EncoderWeightShapes(config: T5EncoderConfig): WeightShapes {
  return recordWeightShapes(
    "t5-encoder-keys",
    (g, weights) => {
      buildT5Encoder(g, config, weights, g.input("input_ids", "int64", [1, 2]));
    },
    { present: ["shared.weight"] },
  );
}

/**
 * Writes a tiny random FLUX.1-Kontext-dev checkpoint into `dir` (created if needed; files already there are
 * overwritten) in the diffusers layout that `openFluxKontextModel` / `loadFluxKontext({ model: dir })` read.
 */
export async function writeFluxKontextReplica(
  dir: string,
  options: FluxKontextReplicaOptions = {},
): Promise<void> {
  const seed = checkReplicaSeed("writeFluxKontextReplica", options.seed);
  const dtype = checkReplicaDType("writeFluxKontextReplica", options.dtype);
  await writeConfigJson(join(dir, "model_index.json"), FLUX_KONTEXT_MODEL_INDEX);

  const clipJson = clipConfig(dtype);
  const t5Json = t5Config(dtype);
  const vaeJson = vaeConfig();
  const tfJson = transformerConfig(
    replicaConfigNumber(t5Json, "d_model"),
    replicaConfigNumber(clipJson, "hidden_size"),
    replicaConfigNumber(vaeJson, "latent_channels"),
  );

  const transformer = join(dir, "transformer");
  await writeConfigJson(join(transformer, "config.json"), tfJson);
  const tfShapes = fluxTransformerWeightShapes(parseFluxTransformerConfig(tfJson));
  await writeShardedSafetensors(
    transformer,
    "diffusion_pytorch_model",
    "diffusion_pytorch_model.safetensors.index.json",
    replicaTensors("transformer", tfShapes, seed, dtype),
    3,
  );

  const vae = join(dir, "vae");
  await writeConfigJson(join(vae, "config.json"), vaeJson);
  await writeReplicaSafetensors(
    join(vae, "diffusion_pytorch_model.safetensors"),
    replicaTensors("vae", autoencoderKLWeightShapes(parseAutoencoderKLConfig(vaeJson)), seed, dtype),
  );

  const clip = join(dir, "text_encoder");
  await writeConfigJson(join(clip, "config.json"), clipJson);
  await writeReplicaSafetensors(
    join(clip, "model.safetensors"),
    replicaTensors("text_encoder", clipTextWeightShapes(parseClipTextConfig(clipJson)), seed, dtype),
  );

  const t5 = join(dir, "text_encoder_2");
  await writeConfigJson(join(t5, "config.json"), t5Json);
  await writeShardedSafetensors(
    t5,
    "model",
    "model.safetensors.index.json",
    replicaTensors("text_encoder_2", t5EncoderWeightShapes(parseT5EncoderConfig(t5Json)), seed, dtype),
  );

  await writeClipReplicaTokenizer(join(dir, "tokenizer"));
  await writeT5ReplicaTokenizer(join(dir, "tokenizer_2"));
  await writeConfigJson(join(dir, "scheduler", "scheduler_config.json"), FLUX_KONTEXT_SCHEDULER_CONFIG);
}
