import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  checkReplicaDType,
  checkReplicaSeed,
  recordWeightShapes,
  replicaConfigNumber,
  replicaTensors,
  writeReplicaSafetensors,
  writeShardedSafetensors as writeSharded,
} from "@edit-r1/adapter-kit";
import {
  type AutoencoderKLQwenImageConfig,
  buildAutoencoderKLQwenImageDecoder,
  buildAutoencoderKLQwenImageEncoder,
  buildQwenImageTransformer,
  hubConfigJson as configJson,
  parseAutoencoderKLQwenImageConfig,
  parseQwenImageTransformerConfig,
  qwen2VLReplicaPreprocessorConfig as preprocessorConfig,
  type QwenImageTransformerConfig,
  qwen25VLReplicaGenerationConfig,
  qwen25VLWeightShapes,
  qwenImageTransformerInputs,
  QWEN2_REPLICA_CHAT_TEMPLATE as REPLICA_CHAT_TEMPLATE,
  qwen2ReplicaMergesTxt as replicaMergesTxt,
  qwen2ReplicaSpecialTokensMap as replicaSpecialTokensMap,
  qwen25VLReplicaConfig as replicaTextEncoderConfig,
  qwen2ReplicaTokenizerConfig as replicaTokenizerConfig,
  qwen2ReplicaTokenizerJson as replicaTokenizerJson,
  qwen2ReplicaVocabulary as replicaVocabulary,
  replicaWeightValues,
  qwen2VLReplicaVideoPreprocessorConfig as videoPreprocessorConfig,
  type WeightShapes,
} from "@edit-r1/models";

export { qwen25VLWeightShapes, replicaWeightValues, type WeightShapes };

/**
 * A tiny random-weight Qwen-Image-Edit pipeline in the real Hub layout (Qwen/Qwen-Image-Edit and -2509):
 * model_index.json, transformer/ and text_encoder/ sharded in two files with their index, vae/, scheduler/,
 * processor/ and tokenizer/, with the real configs' keys at tiny sizes (about 2 MB in all). The weight keys and
 * shapes are recorded from this repository's own graph builders (transformer, VAE, Qwen2.5-VL) run on the tiny
 * configs, plus the stored weights no forward pass reads (the VAE's temporal convolutions, the VLM's lm_head),
 * so they cannot drift from what the loaders ask for.
 */

export type QwenImageEditReplicaVariant = "edit" | "edit-plus";

export interface QwenImageEditReplicaOptions {
  /** Seed of every weight (default 0); the same seed writes the same bytes. */
  seed?: number;
  /** "edit" (QwenImageEditPipeline, Qwen-Image-Edit) or "edit-plus" (QwenImageEditPlusPipeline, 2509). */
  variant?: QwenImageEditReplicaVariant;
  /** Stored weight dtype: bfloat16 (default, as released) or float32. */
  dtype?: "bfloat16" | "float32";
}

const DIFFUSERS_VERSION = "0.35.0.dev0";

type Json = Record<string, unknown>;

/** The real Qwen-Image VAE's per-channel latent statistics (vae/config.json), so z is normalised as in use. */
const LATENTS_MEAN = [
  -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632,
  -0.1922, -0.9497, 0.2503, -0.2921,
];
const LATENTS_STD = [
  2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382,
  1.1253, 2.8251, 1.916,
];

/** scheduler/scheduler_config.json of Qwen-Image-Edit and -2509, as released. */
export const QWEN_IMAGE_SCHEDULER_CONFIG: Json = {
  _class_name: "FlowMatchEulerDiscreteScheduler",
  _diffusers_version: "0.34.0.dev0",
  base_image_seq_len: 256,
  base_shift: 0.5,
  invert_sigmas: false,
  max_image_seq_len: 8192,
  max_shift: 0.9,
  num_train_timesteps: 1000,
  shift: 1.0,
  shift_terminal: 0.02,
  stochastic_sampling: false,
  time_shift_type: "exponential",
  use_beta_sigmas: false,
  use_dynamic_shifting: true,
  use_exponential_sigmas: false,
  use_karras_sigmas: false,
};

function transformerConfig(textHidden: number): Json {
  return {
    _class_name: "QwenImageTransformer2DModel",
    _diffusers_version: DIFFUSERS_VERSION,
    attention_head_dim: 16,
    axes_dims_rope: [4, 6, 6],
    guidance_embeds: false,
    in_channels: 64,
    joint_attention_dim: textHidden,
    num_attention_heads: 2,
    num_layers: 2,
    out_channels: 16,
    patch_size: 2,
  };
}

function vaeConfig(): Json {
  return {
    _class_name: "AutoencoderKLQwenImage",
    _diffusers_version: DIFFUSERS_VERSION,
    attn_scales: [],
    base_dim: 8,
    dim_mult: [1, 2, 4, 4],
    dropout: 0.0,
    latents_mean: LATENTS_MEAN,
    latents_std: LATENTS_STD,
    num_res_blocks: 1,
    temperal_downsample: [false, true, true],
    z_dim: 16,
  };
}

function modelIndex(variant: QwenImageEditReplicaVariant): Json {
  return {
    _class_name: variant === "edit" ? "QwenImageEditPipeline" : "QwenImageEditPlusPipeline",
    _diffusers_version: DIFFUSERS_VERSION,
    processor: ["transformers", "Qwen2VLProcessor"],
    scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    text_encoder: ["transformers", "Qwen2_5_VLForConditionalGeneration"],
    tokenizer: ["transformers", "Qwen2Tokenizer"],
    transformer: ["diffusers", "QwenImageTransformer2DModel"],
    vae: ["diffusers", "AutoencoderKLQwenImage"],
  };
}

/** The transformer weights a checkpoint of `config` holds: what buildQwenImageTransformer reads. */
export function qwenImageTransformerWeightShapes(config: QwenImageTransformerConfig): WeightShapes {
  return recordWeightShapes("qwen-image-transformer-keys", (g, weights) => {
    const inputs = qwenImageTransformerInputs(g, config, {
      batch: 1,
      imgShapes: [
        [1, 2, 2],
        [1, 2, 2],
      ],
      textTokens: 2,
    });
    buildQwenImageTransformer(g, config, weights, inputs);
  });
}

/**
 * The VAE weights a checkpoint of `config` holds: what the encoder and decoder builders read, plus the
 * `time_conv` of each temporal resampler (stored in every release, unused for single frames).
 */
export function qwenImageVaeWeightShapes(config: AutoencoderKLQwenImageConfig): WeightShapes {
  const read = recordWeightShapes("qwen-image-vae-keys", (g, weights) => {
    const side = 2 ** (config.dimMult.length - 1);
    const image = g.input("image", "float32", [1, config.inputChannels, 1, side, side]);
    const latent = g.input("latent", "float32", [1, config.zDim, 1, 1, 1]);
    buildAutoencoderKLQwenImageEncoder(g, config, weights, image);
    buildAutoencoderKLQwenImageDecoder(g, config, weights, latent);
  });
  const temporalUp = [...config.temperalDownsample].reverse();
  const out: WeightShapes = new Map();
  let downStage = 0;
  for (const [key, shape] of read) {
    out.set(key, shape);
    const down = /^(encoder\.down_blocks\.\d+)\.resample\.1\.bias$/.exec(key);
    if (down && config.temperalDownsample[downStage++]) {
      const c = shape[0]!;
      out.set(`${down[1]}.time_conv.weight`, [c, c, 3, 1, 1]);
      out.set(`${down[1]}.time_conv.bias`, [c]);
    }
    const up = /^(decoder\.up_blocks\.(\d+)\.upsamplers\.0)\.resample\.1\.bias$/.exec(key);
    if (up && temporalUp[Number(up[2])]) {
      const c = read.get(`${up[1]}.resample.1.weight`)![1]!;
      out.set(`${up[1]}.time_conv.weight`, [2 * c, c, 3, 1, 1]);
      out.set(`${up[1]}.time_conv.bias`, [2 * c]);
    }
  }
  return out;
}

/**
 * Writes a tiny random Qwen-Image-Edit (or -2509, `variant: "edit-plus"`) checkpoint into `dir` (created if
 * needed; files already there are overwritten) in the layout `openQwenImageEditModel` and diffusers read.
 */
export async function writeQwenImageEditReplica(
  dir: string,
  options: QwenImageEditReplicaOptions = {},
): Promise<void> {
  const seed = checkReplicaSeed("writeQwenImageEditReplica", options.seed);
  const variant = options.variant ?? "edit";
  if (variant !== "edit" && variant !== "edit-plus") {
    throw new RangeError(
      `writeQwenImageEditReplica: variant must be "edit" or "edit-plus", got "${variant}"`,
    );
  }
  const dtype = checkReplicaDType("writeQwenImageEditReplica", options.dtype);
  const sub = async (name: string) => {
    const p = join(dir, name);
    await mkdir(p, { recursive: true });
    return p;
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "model_index.json"), configJson(modelIndex(variant)));

  const vocabulary = replicaVocabulary();
  const textConfig = replicaTextEncoderConfig(vocabulary, dtype);
  const vision = textConfig.vision_config as Json;

  const transformerDir = await sub("transformer");
  const tfJson = transformerConfig(replicaConfigNumber(textConfig, "hidden_size"));
  await writeFile(join(transformerDir, "config.json"), configJson(tfJson));
  const tfShapes = qwenImageTransformerWeightShapes(parseQwenImageTransformerConfig(tfJson));
  await writeSharded(
    transformerDir,
    "diffusion_pytorch_model",
    "diffusion_pytorch_model.safetensors.index.json",
    replicaTensors("transformer", tfShapes, seed, dtype),
  );

  const vaeDir = await sub("vae");
  const vaeJson = vaeConfig();
  await writeFile(join(vaeDir, "config.json"), configJson(vaeJson));
  const vaeShapes = qwenImageVaeWeightShapes(parseAutoencoderKLQwenImageConfig(vaeJson));
  await writeReplicaSafetensors(
    join(vaeDir, "diffusion_pytorch_model.safetensors"),
    replicaTensors("vae", vaeShapes, seed, dtype),
  );

  const textDir = await sub("text_encoder");
  await writeFile(join(textDir, "config.json"), configJson(textConfig));
  await writeFile(
    join(textDir, "generation_config.json"),
    configJson(qwen25VLReplicaGenerationConfig(textConfig, vocabulary)),
  );
  await writeSharded(
    textDir,
    "model",
    "model.safetensors.index.json",
    replicaTensors("text_encoder", qwen25VLWeightShapes(textConfig), seed, dtype),
  );

  const scheduler = await sub("scheduler");
  await writeFile(join(scheduler, "scheduler_config.json"), configJson(QWEN_IMAGE_SCHEDULER_CONFIG));

  for (const folder of ["tokenizer", "processor"] as const) {
    const p = await sub(folder);
    const processor = folder === "processor";
    await writeFile(join(p, "vocab.json"), JSON.stringify(vocabulary.vocab));
    await writeFile(join(p, "merges.txt"), replicaMergesTxt(vocabulary));
    await writeFile(join(p, "added_tokens.json"), configJson(vocabulary.added));
    await writeFile(join(p, "special_tokens_map.json"), configJson(replicaSpecialTokensMap()));
    await writeFile(
      join(p, "tokenizer_config.json"),
      configJson(replicaTokenizerConfig(vocabulary, processor)),
    );
    await writeFile(join(p, "chat_template.jinja"), REPLICA_CHAT_TEMPLATE);
    if (processor) {
      await writeFile(join(p, "tokenizer.json"), JSON.stringify(replicaTokenizerJson(vocabulary), null, 2));
      await writeFile(join(p, "preprocessor_config.json"), configJson(preprocessorConfig(vision)));
      await writeFile(join(p, "video_preprocessor_config.json"), configJson(videoPreprocessorConfig(vision)));
    }
  }
}
