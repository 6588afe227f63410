import { ModelConfigError } from "./model-config-error.js";

/** Activations the Qwen2.5-VL configs name (transformers' ACT2FN keys). */
export type Qwen25VLActivation = "silu" | "gelu" | "gelu_pytorch_tanh" | "quick_gelu";

/** The vision tower of Qwen2.5-VL (`vision_config`). */
export interface Qwen25VLVisionConfig {
  depth: number;
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  inChannels: number;
  patchSize: number;
  spatialMergeSize: number;
  temporalPatchSize: number;
  /** Window edge in pixels (112: 4×4 merged cells of 2×2 patches of 14 px). */
  windowSize: number;
  /** Blocks that attend over the whole image instead of within windows. */
  fullattBlockIndexes: readonly number[];
  /** Width of the merger's output, the LLM's hidden size. */
  outHiddenSize: number;
  hiddenAct: Qwen25VLActivation;
}

/** The transformers `config.json` of Qwen2_5_VLForConditionalGeneration (Qwen-Image's `text_encoder/`). */
export interface Qwen25VLConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  /** hidden_size / num_attention_heads. */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Frequencies of the (t, h, w) position rows; they add up to headDim / 2. */
  mropeSection: readonly [number, number, number];
  hiddenAct: Qwen25VLActivation;
  imageTokenId: number;
  videoTokenId?: number | undefined;
  visionStartTokenId: number;
  visionEndTokenId: number;
  /** `tie_word_embeddings`: lm_head shares the input embedding table (Qwen2.5-VL-3B). Default false. */
  tieWordEmbeddings?: boolean | undefined;
  vision: Qwen25VLVisionConfig;
}

const ACTIVATIONS: ReadonlySet<string> = new Set(["silu", "gelu", "gelu_pytorch_tanh", "quick_gelu"]);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Reads a Qwen2.5-VL config.json in either layout: the legacy one (Qwen2.5-VL-7B-Instruct) with the text
 * model's keys at the top level and `rope_scaling: {type: "mrope", mrope_section}`, or the newer one that
 * nests them under `text_config` (with `rope_scaling: {mrope_section, rope_type}` or transformers v5's
 * `rope_parameters`). Where both hold a key, `text_config` wins; token ids are read from the top level
 * first. Every key is required (the real checkpoints write them all), except the activations (silu) and
 * the vision tower's input channels (3, as `in_channels` or `in_chans`). A missing or bad key throws a
 * ModelConfigError naming the file and the key.
 */
export function parseQwen25VLConfig(json: Json, source = "config.json"): Qwen25VLConfig {
  const text = isObject(json.text_config) ? json.text_config : undefined;
  const where = (key: string) => (text ? `"text_config.${key}" (or a top-level "${key}")` : `"${key}"`);
  const textValue = (key: string): unknown => (text && key in text ? text[key] : json[key]);
  const missing = (what: string): never => {
    throw new ModelConfigError(`${source}: ${what} is missing`);
  };
  const textInt = (key: string) => positiveInt(textValue(key), where(key), source, missing);
  const tokenId = (key: string): number => {
    const v = key in json ? json[key] : text?.[key];
    if (v === undefined) missing(`"${key}"`);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new ModelConfigError(`${source}: "${key}" must be a token id, got ${JSON.stringify(v)}`);
    }
    return v;
  };

  const hiddenSize = textInt("hidden_size");
  const heads = textInt("num_attention_heads");
  const kvHeads = textInt("num_key_value_heads");
  if (hiddenSize % heads !== 0) {
    throw new ModelConfigError(
      `${source}: "hidden_size" (${hiddenSize}) must be divisible by "num_attention_heads" (${heads})`,
    );
  }
  if (heads % kvHeads !== 0) {
    throw new ModelConfigError(
      `${source}: "num_attention_heads" (${heads}) must be a multiple of "num_key_value_heads" (${kvHeads})`,
    );
  }
  const headDim = hiddenSize / heads;
  const eps = textValue("rms_norm_eps");
  if (eps === undefined) missing(where("rms_norm_eps"));
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new ModelConfigError(
      `${source}: "rms_norm_eps" must be a positive number, got ${JSON.stringify(eps)}`,
    );
  }
  const rope = ropeSettings(json, text, source, missing);
  const sectionSum = rope.mropeSection.reduce((a, b) => a + b, 0);
  if (2 * sectionSum !== headDim) {
    throw new ModelConfigError(
      `${source}: "mrope_section" ${JSON.stringify(rope.mropeSection)} must add up to head_dim / 2 = ${headDim / 2}`,
    );
  }

  const videoTokenId = (json.video_token_id ?? text?.video_token_id) as number | undefined;
  const tie = json.tie_word_embeddings ?? text?.tie_word_embeddings ?? false;
  if (typeof tie !== "boolean") {
    throw new ModelConfigError(
      `${source}: "tie_word_embeddings" must be true or false, got ${JSON.stringify(tie)}`,
    );
  }
  return {
    vocabSize: textInt("vocab_size"),
    hiddenSize,
    intermediateSize: textInt("intermediate_size"),
    numHiddenLayers: textInt("num_hidden_layers"),
    numAttentionHeads: heads,
    numKeyValueHeads: kvHeads,
    headDim,
    rmsNormEps: eps,
    ropeTheta: rope.theta,
    mropeSection: rope.mropeSection,
    hiddenAct: activation(textValue("hidden_act"), where("hidden_act"), source),
    imageTokenId: tokenId("image_token_id"),
    videoTokenId: typeof videoTokenId === "number" ? videoTokenId : undefined,
    visionStartTokenId: tokenId("vision_start_token_id"),
    visionEndTokenId: tokenId("vision_end_token_id"),
    tieWordEmbeddings: tie,
    vision: parseVision(json.vision_config, hiddenSize, source, missing),
  };
}

function positiveInt(v: unknown, what: string, source: string, missing: (w: string) => never): number {
  if (v === undefined) missing(what);
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new ModelConfigError(`${source}: ${what} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function activation(v: unknown, what: string, source: string): Qwen25VLActivation {
  if (v === undefined) return "silu";
  if (typeof v !== "string" || !ACTIVATIONS.has(v)) {
    throw new ModelConfigError(
      `${source}: ${what} must be one of ${[...ACTIVATIONS].join(", ")}, got ${JSON.stringify(v)}`,
    );
  }
  return v as Qwen25VLActivation;
}

/** rope_theta and mrope_section from rope_scaling / rope_parameters, in text_config or at the top level. */
function ropeSettings(
  json: Json,
  text: Json | undefined,
  source: string,
  missing: (w: string) => never,
): { theta: number; mropeSection: [number, number, number] } {
  const holders = [text, json].filter(isObject);
  const candidates: { obj: Json; name: string }[] = [];
  for (const h of holders) {
    const prefix = h === text ? "text_config." : "";
    for (const key of ["rope_scaling", "rope_parameters"]) {
      if (isObject(h[key])) candidates.push({ obj: h[key] as Json, name: `${prefix}${key}` });
    }
  }
  const withSection = candidates.find((c) => c.obj.mrope_section !== undefined);
  if (!withSection) {
    const places = text ? "text_config.rope_scaling, rope_scaling or rope_parameters" : "rope_scaling";
    missing(`"mrope_section" (in ${places})`);
  }
  const section = withSection!.obj.mrope_section;
  if (
    !Array.isArray(section) ||
    section.length !== 3 ||
    !section.every((s) => Number.isInteger(s) && s > 0)
  ) {
    throw new ModelConfigError(
      `${source}: "${withSection!.name}.mrope_section" must be three positive integers, got ${JSON.stringify(section)}`,
    );
  }
  let theta: unknown;
  for (const h of holders) if (theta === undefined && h.rope_theta !== undefined) theta = h.rope_theta;
  for (const c of candidates)
    if (theta === undefined && c.obj.rope_theta !== undefined) theta = c.obj.rope_theta;
  if (theta === undefined)
    missing(text ? `"text_config.rope_theta" (or a top-level "rope_theta")` : `"rope_theta"`);
  if (typeof theta !== "number" || !(theta > 0)) {
    throw new ModelConfigError(
      `${source}: "rope_theta" must be a positive number, got ${JSON.stringify(theta)}`,
    );
  }
  return { theta, mropeSection: section as [number, number, number] };
}

function parseVision(
  v: unknown,
  llmHidden: number,
  source: string,
  missing: (w: string) => never,
): Qwen25VLVisionConfig {
  if (!isObject(v)) missing(`"vision_config"`);
  const vc = v as Json;
  const int = (key: string) => positiveInt(vc[key], `"vision_config.${key}"`, source, missing);
  const hiddenSize = int("hidden_size");
  const numHeads = int("num_heads");
  if (hiddenSize % numHeads !== 0 || (hiddenSize / numHeads) % 4 !== 0) {
    throw new ModelConfigError(
      `${source}: "vision_config.hidden_size" (${hiddenSize}) / "num_heads" (${numHeads}) must be a multiple of 4 ` +
        "(the head splits into rotary row and column halves of cos/sin pairs)",
    );
  }
  const channels = vc.in_channels ?? vc.in_chans ?? 3;
  const inChannels = positiveInt(channels, `"vision_config.in_channels"`, source, missing);
  const patchSize = int("patch_size");
  const spatialMergeSize = int("spatial_merge_size");
  const windowSize = int("window_size");
  if (Math.floor(windowSize / spatialMergeSize / patchSize) < 1) {
    throw new ModelConfigError(
      `${source}: "vision_config.window_size" (${windowSize}) must span at least one merged cell ` +
        `(${spatialMergeSize}×${patchSize} px)`,
    );
  }
  const depth = int("depth");
  const full = vc.fullatt_block_indexes;
  if (full === undefined) missing(`"vision_config.fullatt_block_indexes"`);
  if (!Array.isArray(full) || !full.every((i) => Number.isInteger(i) && i >= 0 && i < depth)) {
    throw new ModelConfigError(
      `${source}: "vision_config.fullatt_block_indexes" must list block indexes below depth ${depth}, got ${JSON.stringify(full)}`,
    );
  }
  const outHiddenSize = int("out_hidden_size");
  if (outHiddenSize !== llmHidden) {
    throw new ModelConfigError(
      `${source}: "vision_config.out_hidden_size" (${outHiddenSize}) must equal the text model's hidden_size (${llmHidden})`,
    );
  }
  return {
    depth,
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    numHeads,
    inChannels,
    patchSize,
    spatialMergeSize,
    temporalPatchSize: int("temporal_patch_size"),
    windowSize,
    fullattBlockIndexes: full as number[],
    outHiddenSize,
    hiddenAct: activation(vc.hidden_act, `"vision_config.hidden_act"`, source),
  };
}
