export { TinyAdapterError } from "./errors.js";
export { initTinyWeights, tinyWeightShapes } from "./init-weights.js";
export { InputWeights } from "./input-weights.js";
export { packImage, unpackImage } from "./pack-image.js";
export {
  PRETRAIN_STATE_FILE,
  type PretrainOptions,
  type PretrainProgress,
  type PretrainResult,
  pretrainBatch,
  pretrainTiny,
} from "./pretrain.js";
export {
  adapter,
  type LoadTinyPolicyOptions,
  loadTinyPolicy,
  type TinyLoraSettings,
  type TinyPolicy,
  tinyAdapter,
  writeTinyTrainData,
} from "./tiny-adapter.js";
export { checkTinyImage, type TinyConditions, tinyConditions, tinyWordIds } from "./tiny-conditions.js";
export {
  defaultTinyModelConfig,
  TINY_IMAGE_SIZE,
  TINY_IMAGE_TOKENS,
  TINY_LATENT_SIZE,
  TINY_TEXT_TOKENS,
  TINY_TOKEN_CHANNELS,
  TINY_TRANSFORMER_CONFIG_JSON,
  type TinyModelConfig,
  tinyFluxConfig,
} from "./tiny-config.js";
export { type TinyEditorOptions, tinyEditor } from "./tiny-editor.js";
export { LORA_INPUT_PREFIX, TinyModel } from "./tiny-model.js";
export { TINY_DEFAULT_SHIFT, tinySigmas } from "./tiny-schedule.js";
export {
  buildTinyVelocity,
  TEXT_EMBEDDING_KEY,
  TEXT_POSITION_KEY,
  type TinyVelocityInputs,
  tinyImageIds,
} from "./tiny-velocity.js";
export {
  DEFAULT_TINY_WEIGHTS_DIR,
  readTinyWeights,
  TINY_CONFIG_FILE,
  TINY_WEIGHTS_FILE,
  type TinyWeights,
  tinyWeightSource,
  writeTinyWeights,
} from "./tiny-weights.js";
export { type VerifierScore, verifierScore } from "./verifier-score.js";
