import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Rng } from "@edit-r1/core";
import { float32ToBfloat16, Graph, numel, type Tensor, writeSafetensors } from "@edit-r1/engine";
import {
  type AutoencoderKLQwenImageConfig,
  buildAutoencoderKLQwenImageDecoder,
  buildAutoencoderKLQwenImageEncoder,
  buildQwen25VLEncoder,
  buildQwenImageTransformer,
  GraphWeights,
  memoryWeightSource,
  parseAutoencoderKLQwenImageConfig,
  parseQwen25VLConfig,
  parseQwenImageTransformerConfig,
  type QwenImageTransformerConfig,
  qwenImageTransformerInputs,
} from "@edit-r1/models";
import {
  REPLICA_CHAT_TEMPLATE,
  type ReplicaVocabulary,
  replicaMergesTxt,
  replicaSpecialTokensMap,
  replicaTokenizerConfig,
  replicaTokenizerJson,
  replicaVocabulary,
} from "./replica-tokenizer.js";

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

/** A weight's name → shape, in the order the builders ask for them. */
export type WeightShapes = Map<string, number[]>;

const DIFFUSERS_VERSION = "0.35.0.dev0";
const TRANSFORMERS_VERSION = "4.53.1";

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

const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
const MIN_PIXELS = 3136;
const MAX_PIXELS = 12845056;

/** The text encoder's config.json: Qwen2_5_VLForConditionalGeneration in the legacy (top-level) layout. */
export function replicaTextEncoderConfig(v: ReplicaVocabulary, dtype: string): Json {
  const id = (t: string) => v.added[t]!;
  return {
    architectures: ["Qwen2_5_VLForConditionalGeneration"],
    attention_dropout: 0.0,
    bos_token_id: id("<|endoftext|>"),
    eos_token_id: id("<|im_end|>"),
    hidden_act: "silu",
    hidden_size: 64,
    image_token_id: id("<|image_pad|>"),
    initializer_range: 0.02,
    intermediate_size: 96,
    max_position_embeddings: 128000,
    max_window_layers: 2,
    model_type: "qwen2_5_vl",
    num_attention_heads: 4,
    num_hidden_layers: 2,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_scaling: { mrope_section: [2, 3, 3], type: "mrope" },
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: false,
    torch_dtype: dtype,
    transformers_version: TRANSFORMERS_VERSION,
    use_cache: true,
    use_sliding_window: false,
    video_token_id: id("<|video_pad|>"),
    vision_config: {
      depth: 4,
      fullatt_block_indexes: [1, 3],
      hidden_act: "silu",
      hidden_size: 32,
      in_channels: 3,
      in_chans: 3,
      intermediate_size: 48,
      model_type: "qwen2_5_vl",
      num_heads: 2,
      out_hidden_size: 64,
      patch_size: 14,
      spatial_merge_size: 2,
      spatial_patch_size: 14,
      temporal_patch_size: 2,
      tokens_per_second: 2,
      torch_dtype: dtype,
      window_size: 112,
    },
    vision_end_token_id: id("<|vision_end|>"),
    vision_start_token_id: id("<|vision_start|>"),
    vision_token_id: id("<|vision_pad|>"),
    // Covers every id in use, rounded up as the real 152064 rounds 151665.
    vocab_size: Math.ceil(v.size / 64) * 64,
  };
}

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

/** processor/preprocessor_config.json: the real Qwen2VLImageProcessorFast settings (vision sizes must match). */
function preprocessorConfig(vision: Json): Json {
  return {
    crop_size: null,
    data_format: "channels_first",
    default_to_square: true,
    device: null,
    disable_grouping: null,
    do_center_crop: null,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: CLIP_MEAN,
    image_processor_type: "Qwen2VLImageProcessorFast",
    image_std: CLIP_STD,
    input_data_format: null,
    max_pixels: MAX_PIXELS,
    merge_size: vision.spatial_merge_size,
    min_pixels: MIN_PIXELS,
    patch_size: vision.patch_size,
    processor_class: "Qwen2VLProcessor",
    resample: 3,
    rescale_factor: 1 / 255,
    return_tensors: null,
    size: { longest_edge: MAX_PIXELS, shortest_edge: MIN_PIXELS },
    temporal_patch_size: vision.temporal_patch_size,
  };
}

function videoPreprocessorConfig(vision: Json): Json {
  return {
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: CLIP_MEAN,
    image_std: CLIP_STD,
    max_pixels: MAX_PIXELS,
    merge_size: vision.spatial_merge_size,
    min_pixels: MIN_PIXELS,
    patch_size: vision.patch_size,
    processor_class: "Qwen2VLProcessor",
    resample: 3,
    rescale_factor: 1 / 255,
    size: { longest_edge: MAX_PIXELS, shortest_edge: MIN_PIXELS },
    temporal_patch_size: vision.temporal_patch_size,
    video_processor_type: "Qwen2VLVideoProcessor",
  };
}

/**
 * Records every `get(key, shape)` a graph builder makes, handing back a placeholder input of that shape, so
 * the builder itself says which weights a checkpoint of a config must hold.
 */
class RecordingWeights extends GraphWeights {
  readonly shapes: WeightShapes = new Map();
  private readonly placeholders = new Map<string, Tensor>();

  constructor(graph: Graph) {
    super(graph, memoryWeightSource(new Map(), "weight recorder"));
  }

  override has(_key: string): boolean {
    return false;
  }

  override get(key: string, shape: readonly number[]): Tensor {
    const seen = this.shapes.get(key);
    if (seen && (seen.length !== shape.length || seen.some((d, i) => d !== shape[i]))) {
      throw new Error(`weight "${key}" was asked for as [${seen}] and as [${shape}]`);
    }
    let t = this.placeholders.get(key);
    if (!t) {
      this.shapes.set(key, [...shape]);
      t = this.graph.input(`weight:${key}`, "float32", shape);
      this.placeholders.set(key, t);
    }
    return t;
  }
}

/** The transformer weights a checkpoint of `config` holds: what buildQwenImageTransformer reads. */
export function qwenImageTransformerWeightShapes(config: QwenImageTransformerConfig): WeightShapes {
  const g = new Graph("qwen-image-transformer-keys");
  const weights = new RecordingWeights(g);
  const inputs = qwenImageTransformerInputs(g, config, {
    batch: 1,
    imgShapes: [
      [1, 2, 2],
      [1, 2, 2],
    ],
    textTokens: 2,
  });
  buildQwenImageTransformer(g, config, weights, inputs);
  return weights.shapes;
}

/**
 * The VAE weights a checkpoint of `config` holds: what the encoder and decoder builders read, plus the
 * `time_conv` of each temporal resampler (stored in every release, unused for single frames).
 */
export function qwenImageVaeWeightShapes(config: AutoencoderKLQwenImageConfig): WeightShapes {
  const g = new Graph("qwen-image-vae-keys");
  const weights = new RecordingWeights(g);
  const side = 2 ** (config.dimMult.length - 1);
  const image = g.input("image", "float32", [1, config.inputChannels, 1, side, side]);
  const latent = g.input("latent", "float32", [1, config.zDim, 1, 1, 1]);
  buildAutoencoderKLQwenImageEncoder(g, config, weights, image);
  buildAutoencoderKLQwenImageDecoder(g, config, weights, latent);
  const temporalUp = [...config.temperalDownsample].reverse();
  const out: WeightShapes = new Map();
  let downStage = 0;
  for (const [key, shape] of weights.shapes) {
    out.set(key, shape);
    const down = /^(encoder\.down_blocks\.\d+)\.resample\.1\.bias$/.exec(key);
    if (down && config.temperalDownsample[downStage++]) {
      const c = shape[0]!;
      out.set(`${down[1]}.time_conv.weight`, [c, c, 3, 1, 1]);
      out.set(`${down[1]}.time_conv.bias`, [c]);
    }
    const up = /^(decoder\.up_blocks\.(\d+)\.upsamplers\.0)\.resample\.1\.bias$/.exec(key);
    if (up && temporalUp[Number(up[2])]) {
      const c = weights.shapes.get(`${up[1]}.resample.1.weight`)![1]!;
      out.set(`${up[1]}.time_conv.weight`, [2 * c, c, 3, 1, 1]);
      out.set(`${up[1]}.time_conv.bias`, [2 * c]);
    }
  }
  return out;
}

const num = (json: Json, key: string): number => {
  const v = json[key];
  if (typeof v !== "number") throw new Error(`config: "${key}" must be a number`);
  return v;
};

/**
 * The Qwen2.5-VL weights of a Qwen2_5_VLForConditionalGeneration config.json, in the legacy key layout the
 * Qwen-Image repositories store (`visual.*`, `model.*`): what buildQwen25VLEncoder reads for an image prompt,
 * plus `lm_head.weight` (stored unless the embeddings are tied, never used for encoding).
 */
export function qwen25VLWeightShapes(json: Json): WeightShapes {
  const config = parseQwen25VLConfig(json);
  const v = config.vision;
  const g = new Graph("qwen2.5-vl-keys");
  const weights = new RecordingWeights(g);
  // One image of one merged token: [<|vision_start|>, <|image_pad|>, <|vision_end|>].
  const grid = [1, v.spatialMergeSize, v.spatialMergeSize] as const;
  const patches = grid[0] * grid[1] * grid[2];
  const rowWidth = v.inChannels * v.temporalPatchSize * v.patchSize ** 2;
  buildQwen25VLEncoder(
    g,
    config,
    weights,
    {
      inputIds: g.input("input_ids", "int64", [1, 3]),
      pixelValues: g.input("pixel_values", "float32", [patches, rowWidth]),
      imageGrids: [grid],
      positionIds: new Int32Array(3 * 3),
    },
    { keyPrefixes: { visual: "visual.", text: "model." } },
  );
  const out = new Map(weights.shapes);
  if (json.tie_word_embeddings !== true) out.set("lm_head.weight", [config.vocabSize, config.hiddenSize]);
  return out;
}

/**
 * Seeded values for one weight: norm scales (1-D weights, VAE `gamma`) 1, biases N(0, 0.05²), every other
 * tensor N(0, 1)·0.5/√fan_in (fan_in = all but the first dimension), so activations stay of order one.
 */
export function replicaWeightValues(key: string, shape: readonly number[], rng: Rng): Float32Array {
  const n = numel(shape);
  if (key.endsWith(".gamma") || (shape.length === 1 && key.endsWith(".weight"))) {
    return new Float32Array(n).fill(1);
  }
  const scale = key.endsWith(".bias") ? 0.05 : 0.5 / Math.sqrt(numel(shape.slice(1)));
  const out = rng.normals(n);
  for (let i = 0; i < n; i++) out[i] *= scale;
  return out;
}

interface EncodedTensor {
  dtype: "bfloat16" | "float32";
  shape: number[];
  data: Float32Array | Uint16Array;
}

function randomTensors(
  component: string,
  shapes: WeightShapes,
  seed: number,
  dtype: "bfloat16" | "float32",
): [string, EncodedTensor][] {
  return [...shapes].map(([key, shape]) => {
    // One stream per weight, so a weight's values depend on the seed and its name only.
    const values = replicaWeightValues(key, shape, Rng.derive(seed, `${component}/${key}`));
    const data = dtype === "bfloat16" ? float32ToBfloat16(values) : values;
    return [key, { dtype, shape, data }];
  });
}

const SAFETENSORS_METADATA = { format: "pt" };

/** Sorted keys at every level, two-space indent and a final newline, as diffusers and transformers write configs. */
function configJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Json)[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sort(value), null, 2)}\n`;
}

/**
 * Writes `tensors` as `prefix-0000{1,2}-of-00002.safetensors` (split near half the bytes, in key order) and the
 * `indexName` that maps each key to its file, as transformers and diffusers shard.
 */
async function writeSharded(
  dir: string,
  prefix: string,
  indexName: string,
  tensors: [string, EncodedTensor][],
): Promise<void> {
  const bytes = tensors.map(([, t]) => t.data.byteLength);
  const total = bytes.reduce((a, b) => a + b, 0);
  let cut = 0;
  for (let acc = 0; cut < tensors.length - 1 && acc + bytes[cut]! <= total / 2; cut++) acc += bytes[cut]!;
  cut = Math.max(1, cut);
  const shards = [tensors.slice(0, cut), tensors.slice(cut)];
  const weightMap: Record<string, string> = {};
  for (const [i, part] of shards.entries()) {
    const file = `${prefix}-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(join(dir, file), part, { metadata: SAFETENSORS_METADATA });
    for (const [key] of part) weightMap[key] = file;
  }
  await writeFile(
    join(dir, indexName),
    configJson({ metadata: { total_size: total }, weight_map: weightMap }),
  );
}

/**
 * Writes a tiny random Qwen-Image-Edit (or -2509, `variant: "edit-plus"`) checkpoint into `dir` (created if
 * needed; files already there are overwritten) in the layout `openQwenImageEditModel` and diffusers read.
 */
export async function writeQwenImageEditReplica(
  dir: string,
  options: QwenImageEditReplicaOptions = {},
): Promise<void> {
  const seed = options.seed ?? 0;
  if (!(Number.isInteger(seed) && seed >= 0)) {
    throw new RangeError(`writeQwenImageEditReplica: seed must be a non-negative integer, got ${seed}`);
  }
  const variant = options.variant ?? "edit";
  if (variant !== "edit" && variant !== "edit-plus") {
    throw new RangeError(
      `writeQwenImageEditReplica: variant must be "edit" or "edit-plus", got "${variant}"`,
    );
  }
  const dtype = options.dtype ?? "bfloat16";
  if (dtype !== "bfloat16" && dtype !== "float32") {
    throw new RangeError(`writeQwenImageEditReplica: dtype must be "bfloat16" or "float32", got "${dtype}"`);
  }
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
  const tfJson = transformerConfig(num(textConfig, "hidden_size"));
  await writeFile(join(transformerDir, "config.json"), configJson(tfJson));
  const tfShapes = qwenImageTransformerWeightShapes(parseQwenImageTransformerConfig(tfJson));
  await writeSharded(
    transformerDir,
    "diffusion_pytorch_model",
    "diffusion_pytorch_model.safetensors.index.json",
    randomTensors("transformer", tfShapes, seed, dtype),
  );

  const vaeDir = await sub("vae");
  const vaeJson = vaeConfig();
  await writeFile(join(vaeDir, "config.json"), configJson(vaeJson));
  const vaeShapes = qwenImageVaeWeightShapes(parseAutoencoderKLQwenImageConfig(vaeJson));
  await writeSafetensors(
    join(vaeDir, "diffusion_pytorch_model.safetensors"),
    randomTensors("vae", vaeShapes, seed, dtype),
    { metadata: SAFETENSORS_METADATA },
  );

  const textDir = await sub("text_encoder");
  await writeFile(join(textDir, "config.json"), configJson(textConfig));
  await writeFile(
    join(textDir, "generation_config.json"),
    configJson({
      bos_token_id: textConfig.bos_token_id,
      do_sample: true,
      eos_token_id: [textConfig.eos_token_id, vocabulary.added["<|endoftext|>"]],
      pad_token_id: vocabulary.added["<|endoftext|>"],
      repetition_penalty: 1.05,
      temperature: 0.1,
      top_k: 1,
      top_p: 0.001,
      transformers_version: TRANSFORMERS_VERSION,
    }),
  );
  await writeSharded(
    textDir,
    "model",
    "model.safetensors.index.json",
    randomTensors("text_encoder", qwen25VLWeightShapes(textConfig), seed, dtype),
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
