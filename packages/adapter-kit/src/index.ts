// The replica primitives of @edit-r1/models, so an adapter's writeReplica finds the whole generic half here.
export {
  hubConfigJson,
  RecordingWeights,
  type RecordingWeightsOptions,
  type ReplicaTensor,
  replicaTensor,
  replicaWeightValues,
  type WeightShapes,
  writeReplicaSafetensors,
  writeShardedSafetensors,
} from "@edit-r1/models";
export {
  editorLora,
  graphPolicyOptions,
  type PolicyTrainingOptions,
  policyTrainingOptions,
  type TransformerGraphOptions,
  transformerGraphOptions,
} from "./adapter-options.js";
export { AdapterKitError } from "./errors.js";
export {
  createGraphPolicy,
  type GraphBucket,
  type GraphPolicy,
  type GraphPolicyDefinition,
  type GraphPolicyOptions,
  type VelocityLora,
} from "./graph-policy.js";
export { packLatents, unpackLatents } from "./latent-packing.js";
export { checkLoraCoverage } from "./lora-coverage.js";
export {
  LORA_CONFIG_FILE,
  LORA_WEIGHTS_FILE,
  type LoraFile,
  type ReadLoraOptions,
  readLora,
  type WriteLoraOptions,
  writeLora,
} from "./lora-file.js";
export {
  initLoraParameters,
  type LoraSettings,
  type LoraShapes,
  loraFileOf,
  loraModules,
  loraParameters,
} from "./lora-params.js";
export {
  checkRgbImage,
  imageToTensor,
  resizeLikeDiffusers,
  tensorToImage,
} from "./pipeline-images.js";
export { checkpointShapes, type KeyList, keyPatterns, readKeyList } from "./replica-keys.js";
export {
  checkReplicaDType,
  checkReplicaSeed,
  type ReplicaDType,
  recordWeightShapes,
  replicaConfigNumber,
  replicaTensors,
  writeConfigJson,
} from "./replica-weights.js";
export { batchNoise, requestNoise } from "./request-noise.js";
export {
  asShapeOnlyPolicy,
  type ShapeOnlyPolicy,
  shapeOnlyGuards,
  shapeOnlyTransformer,
} from "./shape-only-policy.js";
