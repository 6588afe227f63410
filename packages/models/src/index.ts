export {
  type AutoencoderKLOptions,
  buildAutoencoderKLDecoder,
  buildAutoencoderKLEncoder,
} from "./autoencoder-kl.js";
export { type AutoencoderKLConfig, parseAutoencoderKLConfig } from "./autoencoder-kl-config.js";
export {
  type AutoencoderKLQwenImageOptions,
  buildAutoencoderKLQwenImageDecoder,
  buildAutoencoderKLQwenImageEncoder,
} from "./autoencoder-kl-qwen-image.js";
export {
  type AutoencoderKLQwenImageConfig,
  parseAutoencoderKLQwenImageConfig,
} from "./autoencoder-kl-qwen-image-config.js";
export {
  CLIP_REPLICA_MERGES,
  clipReplicaVocab,
  T5_REPLICA_PIECES,
  t5ReplicaTokenizerJson,
  writeClipReplicaTokenizer,
  writeT5ReplicaTokenizer,
} from "./clip-t5-replica-tokenizers.js";
export { type ClipTextConfig, parseClipTextConfig } from "./clip-text-config.js";
export {
  buildClipTextModel,
  type ClipTextInputs,
  type ClipTextOptions,
  type ClipTextOutput,
  clipPoolingPositions,
  clipTextInputs,
} from "./clip-text-model.js";
export { withConditionTokens } from "./condition-tokens.js";
export { fluxRotaryEmbedding, sinusoidalEmbedding } from "./embeddings.js";
export { type Float32Tensors, fluxBflWeightSource, fluxDiffusersToBfl } from "./flux-bfl-weights.js";
export { type FluxTransformerConfig, parseFluxTransformerConfig } from "./flux-config.js";
export {
  buildFluxTransformer,
  type FluxInputSizes,
  type FluxTransformerInputs,
  type FluxTransformerOptions,
  type FluxTransformerOutput,
  fluxTransformerInputs,
} from "./flux-transformer.js";
export { type ComputeDType, GraphWeights, type GraphWeightsOptions, graphWeights } from "./graph-weights.js";
export {
  buildKontextVelocity,
  imageTokenIds,
  type KontextVelocityInputs,
  type KontextVelocityOptions,
} from "./kontext-velocity.js";
export { EDIT_R1_LORA_TARGETS, type LoraOptions, type LoraParameter } from "./lora.js";
export { ModelConfigError } from "./model-config-error.js";
export { type PilResampleFilter, type RgbImageU8, resamplePil } from "./pil-resample.js";
export { parseQwenImageTransformerConfig, type QwenImageTransformerConfig } from "./qwen-image-config.js";
export {
  buildQwenImageEditVelocity,
  type QwenImageEditVelocityInputs,
  type QwenImageEditVelocityOptions,
} from "./qwen-image-edit-velocity.js";
export {
  buildQwenImageTransformer,
  type QwenImageInputSizes,
  type QwenImageShape,
  type QwenImageTransformerInputs,
  type QwenImageTransformerOptions,
  type QwenImageTransformerOutput,
  qwenImageRopeIds,
  qwenImageTransformerInputs,
} from "./qwen-image-transformer.js";
export {
  parseQwen25VLConfig,
  type Qwen25VLActivation,
  type Qwen25VLConfig,
  type Qwen25VLVisionConfig,
} from "./qwen2-5-vl-config.js";
export {
  buildQwen25VLEncoder,
  type Qwen25VLEncoderInputs,
  type Qwen25VLEncoderOptions,
  type Qwen25VLEncoderOutput,
} from "./qwen2-5-vl-encoder.js";
export {
  qwen2VLReplicaPreprocessorConfig,
  qwen2VLReplicaVideoPreprocessorConfig,
  qwen25VLReplicaConfig,
  qwen25VLReplicaGenerationConfig,
  qwen25VLWeightShapes,
  REPLICA_TRANSFORMERS_VERSION,
} from "./qwen2-5-vl-replica.js";
export {
  type Qwen25VLImageGrid,
  type Qwen25VLRopeIndex,
  qwen25VLRopeIndex,
  qwen25VLRopeIndexBatch,
} from "./qwen2-5-vl-rope-index.js";
export {
  buildQwen25VLVision,
  type Qwen25VLVisionInputs,
  type Qwen25VLVisionOptions,
} from "./qwen2-5-vl-vision.js";
export {
  byteLevelAlphabet,
  QWEN2_REPLICA_CHAT_TEMPLATE,
  qwen2ReplicaMergesTxt,
  qwen2ReplicaSpecialTokensMap,
  qwen2ReplicaTokenizerConfig,
  qwen2ReplicaTokenizerJson,
  qwen2ReplicaVocabulary,
  type ReplicaVocabulary,
} from "./qwen2-replica-tokenizer.js";
export {
  parseQwen2VLProcessorConfig,
  type Qwen2VLPatches,
  type Qwen2VLProcessorConfig,
  Qwen2VLProcessorError,
  qwen2VLPixelValues,
  qwen2VLResizeAndPatch,
  type SmartResizeOptions,
  smartResize,
} from "./qwen2-vl-processor.js";
export {
  hubConfigJson,
  type NormalSource,
  RecordingWeights,
  type RecordingWeightsOptions,
  type ReplicaTensor,
  replicaTensor,
  replicaWeightValues,
  type WeightShapes,
  writeReplicaSafetensors,
  writeShardedSafetensors,
} from "./replica-weights.js";
export { openSafetensorsWeights, safetensorsWeightSource } from "./safetensors-weights.js";
export {
  readShapeManifest,
  SHAPE_ONLY_FILE,
  type ShapeManifest,
  shapeManifestBytes,
  shapeOnlyWeightSource,
} from "./shape-manifest.js";
export { buildT5Encoder, type T5EncoderOptions, t5RelativePositionBuckets } from "./t5-encoder.js";
export { parseT5EncoderConfig, type T5EncoderConfig } from "./t5-encoder-config.js";
export {
  clipTokenizerJson,
  loadTextTokenizer,
  type TextTokenizer,
  type TokenizedText,
  type TokenizeOptions,
  TokenizerError,
} from "./text-tokenizer.js";
export {
  memoryWeightSource,
  sliceWeightRows,
  stackWeightRows,
  type WeightEntry,
  WeightError,
  type WeightSource,
} from "./weight-source.js";
