import { configReader } from "./config-reader.js";
import { ModelConfigError } from "./model-config-error.js";

/** The transformers `config.json` of a CLIPTextModel (FLUX's `text_encoder/`, the CLIP-L text tower). */
export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: "quick_gelu" | "gelu";
  layerNormEps: number;
  /**
   * transformers pools at the first position of `eosTokenId`, except when it is 2 (the value in the original
   * OpenAI configs, FLUX's included): then it pools at the argmax of the ids, which is the same position for
   * the CLIP vocabulary because `<|endoftext|>` has the highest id.
   */
  eosTokenId: number;
}

const DEFAULTS: Record<string, unknown> = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  eos_token_id: 49407,
};

/**
 * Reads a CLIPTextConfig (or a full CLIPConfig, whose `text_config` is used), filling transformers'
 * defaults; `source` names the file in errors.
 */
export function parseClipTextConfig(json: Record<string, unknown>, source = "config.json"): ClipTextConfig {
  const inner = json.text_config;
  const obj = inner && typeof inner === "object" ? (inner as Record<string, unknown>) : json;
  const { get, int } = configReader(obj, DEFAULTS, source);
  const act = get("hidden_act");
  if (act !== "quick_gelu" && act !== "gelu") {
    throw new ModelConfigError(
      `${source}: "hidden_act" must be "quick_gelu" or "gelu" (the activations CLIP text models use), got ${JSON.stringify(act)}`,
    );
  }
  const eps = get("layer_norm_eps");
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new ModelConfigError(
      `${source}: "layer_norm_eps" must be a positive number, got ${JSON.stringify(eps)}`,
    );
  }
  const hidden = int("hidden_size");
  const heads = int("num_attention_heads");
  if (hidden % heads !== 0) {
    throw new ModelConfigError(
      `${source}: "hidden_size" (${hidden}) must be divisible by "num_attention_heads" (${heads})`,
    );
  }
  const eos = get("eos_token_id");
  if (typeof eos !== "number" || !Number.isInteger(eos) || eos < 0) {
    throw new ModelConfigError(`${source}: "eos_token_id" must be a token id, got ${JSON.stringify(eos)}`);
  }
  return {
    vocabSize: int("vocab_size"),
    hiddenSize: hidden,
    intermediateSize: int("intermediate_size"),
    numHiddenLayers: int("num_hidden_layers"),
    numAttentionHeads: heads,
    maxPositionEmbeddings: int("max_position_embeddings"),
    hiddenAct: act,
    layerNormEps: eps,
    eosTokenId: eos,
  };
}
