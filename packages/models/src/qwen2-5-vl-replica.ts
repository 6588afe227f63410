import { Graph } from "@edit-r1/engine";
import { parseQwen25VLConfig } from "./qwen2-5-vl-config.js";
import { buildQwen25VLEncoder } from "./qwen2-5-vl-encoder.js";
import type { ReplicaVocabulary } from "./qwen2-replica-tokenizer.js";
import { RecordingWeights, type WeightShapes } from "./replica-weights.js";

/**
 * The configs and weight keys of a tiny Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration) replica: the Qwen-Image
 * text encoder's and the Qwen2.5-VL judge's, with the real configs' keys at tiny sizes.
 */

type Json = Record<string, unknown>;

/** The transformers version the replica configs name. */
export const REPLICA_TRANSFORMERS_VERSION = "4.53.1";

/**
 * config.json of a tiny Qwen2_5_VLForConditionalGeneration in the legacy (top-level) layout, its special ids
 * those of `v`: 2 decoder layers of width 64 (4 heads, 2 KV heads), a 4-block vision tower of width 32 with
 * full attention in blocks 1 and 3, the real patch (14), merge (2) and window (112) sizes.
 */
export function qwen25VLReplicaConfig(v: ReplicaVocabulary, dtype: string): Json {
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
    transformers_version: REPLICA_TRANSFORMERS_VERSION,
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

/** generation_config.json of the Qwen2.5-VL Instruct models, ids from the config and vocabulary. */
export function qwen25VLReplicaGenerationConfig(config: Json, v: ReplicaVocabulary): Json {
  return {
    bos_token_id: config.bos_token_id,
    do_sample: true,
    eos_token_id: [config.eos_token_id, v.added["<|endoftext|>"]],
    pad_token_id: v.added["<|endoftext|>"],
    repetition_penalty: 1.05,
    temperature: 0.1,
    top_k: 1,
    top_p: 0.001,
    transformers_version: REPLICA_TRANSFORMERS_VERSION,
  };
}

const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
const MIN_PIXELS = 3136;
const MAX_PIXELS = 12845056;

/**
 * preprocessor_config.json: the real Qwen2VLImageProcessorFast settings (56² to 12845056 pixels, BICUBIC, CLIP
 * mean/std), the patch sizes those of the config's `vision_config`.
 */
export function qwen2VLReplicaPreprocessorConfig(vision: Json): Json {
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

/** video_preprocessor_config.json (Qwen2VLVideoProcessor), for the layouts that ship one. */
export function qwen2VLReplicaVideoPreprocessorConfig(vision: Json): Json {
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
 * The Qwen2.5-VL weights of a Qwen2_5_VLForConditionalGeneration config.json, in the legacy key layout the Qwen
 * repositories store (`visual.*`, `model.*`, `lm_head.*`): what buildQwen25VLEncoder reads for an image prompt
 * with logits, i.e. `lm_head.weight` too unless the embeddings are tied.
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
    {
      keyPrefixes: { visual: "visual.", text: "model." },
      ...(config.tieWordEmbeddings ? {} : { logitsAt: "last" }),
    },
  );
  return new Map(weights.shapes);
}
