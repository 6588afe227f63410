import { configReader } from "./config-reader.js";
import { ModelConfigError } from "./model-config-error.js";

/** The transformers `config.json` of a T5EncoderModel (FLUX's `text_encoder_2/`, T5 v1.1 XXL). */
export interface T5EncoderConfig {
  vocabSize: number;
  dModel: number;
  dKv: number;
  dFf: number;
  numLayers: number;
  numHeads: number;
  relativeAttentionNumBuckets: number;
  relativeAttentionMaxDistance: number;
  layerNormEpsilon: number;
  /** T5 v1.1 (and FLUX's XXL) use a gated FFN with tanh GELU; the original T5 a plain ReLU FFN. */
  feedForward: "gated-gelu" | "relu" | "gated-relu" | "gelu";
}

const DEFAULTS: Record<string, unknown> = {
  vocab_size: 32128,
  d_model: 512,
  d_kv: 64,
  d_ff: 2048,
  num_layers: 6,
  num_heads: 8,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: "relu",
};

const FEED_FORWARD = new Set(["gated-gelu", "relu", "gated-relu", "gelu"]);

/** Reads a T5Config object, filling transformers' defaults; `source` names the file in errors. */
export function parseT5EncoderConfig(json: Record<string, unknown>, source = "config.json"): T5EncoderConfig {
  const { get, int } = configReader(json, DEFAULTS, source);
  const ff = get("feed_forward_proj");
  if (typeof ff !== "string" || !FEED_FORWARD.has(ff)) {
    throw new ModelConfigError(
      `${source}: "feed_forward_proj" must be one of ${[...FEED_FORWARD].join(", ")}, got ${JSON.stringify(ff)}`,
    );
  }
  const eps = get("layer_norm_epsilon");
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new ModelConfigError(
      `${source}: "layer_norm_epsilon" must be a positive number, got ${JSON.stringify(eps)}`,
    );
  }
  const buckets = int("relative_attention_num_buckets");
  if (buckets < 4 || buckets % 2 !== 0) {
    throw new ModelConfigError(
      `${source}: "relative_attention_num_buckets" must be even and at least 4 (bidirectional buckets), got ${buckets}`,
    );
  }
  return {
    vocabSize: int("vocab_size"),
    dModel: int("d_model"),
    dKv: int("d_kv"),
    dFf: int("d_ff"),
    numLayers: int("num_layers"),
    numHeads: int("num_heads"),
    relativeAttentionNumBuckets: buckets,
    relativeAttentionMaxDistance: int("relative_attention_max_distance"),
    layerNormEpsilon: eps,
    feedForward: ff as T5EncoderConfig["feedForward"],
  };
}
