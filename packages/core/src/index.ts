export { AdamW, type AdamWSettings, type AdamWState, adamwStepScalars, DEFAULT_ADAMW } from "./adamw.js";
export {
  type Adapter,
  type AdapterCapabilities,
  type AdapterCli,
  type AdapterLoadOptions,
  type AdapterTrainDefaults,
  checkAdapter,
  type Device,
} from "./adapter.js";
export {
  aggregateBenchmark,
  benchmarkGalleryHtml,
  benchmarkMarkdown,
  writeBenchmarkOutputs,
} from "./benchmark-report.js";
export { emaDecay, oldPolicyDecay } from "./decay.js";
export {
  buildUpdateGraph,
  type DeviceTrainingHost,
  type DeviceTrainingState,
  type DeviceUpdate,
  GraphDeviceTraining,
  type TrainingSnapshot,
} from "./device-training.js";
export {
  type DatasetIssue,
  EditDataset,
  EditDatasetError,
  type EditDatasetRow,
  type LoadEditDatasetOptions,
  type PromptSet,
  promptSetFromRequests,
} from "./edit-dataset.js";
export {
  benchmarkBatchSize,
  type EditJob,
  type EditThenJudgeOptions,
  editThenJudge,
  exclusionsByKind,
  saveEdits,
} from "./edit-then-judge.js";
export { Ema } from "./ema.js";
export { ConfigError, EditR1Error, RunFileError, ShapeError } from "./errors.js";
export {
  DEFAULT_FLOW_SCHEDULE_CONFIG,
  dynamicShiftMu,
  editR1BaseSigmas,
  type FlowSchedule,
  type FlowScheduleConfig,
  type FlowScheduleOptions,
  flowMatchSchedule,
  flowScheduleConfigFromDiffusers,
  timeShift,
} from "./flow-schedule.js";
export {
  type BuiltGraph,
  type ConditionFeeds,
  GraphNftPolicyCore,
  type GraphNftPolicyOptions,
  GraphPolicyError,
  type VelocityGraphSpec,
} from "./graph-policy.js";
export {
  DEFAULT_GROUP_FILTER,
  type GroupFilterSettings,
  type GroupStatistics,
  groupKeyOf,
  groupStatistics,
} from "./group-stats.js";
export {
  type DecodeImageOptions,
  decodeImage,
  encodePng,
  ImageTooLargeError,
  imageGridPng,
  MAX_IMAGE_PIXELS,
} from "./image-io.js";
export { ItemJournal } from "./item-journal.js";
export {
  buildNftObjective,
  type NftObjective,
  type NftObjectiveInputs,
  type NftObjectiveSettings,
} from "./nft-graph.js";
export {
  type AdvantageMode,
  advantageToR,
  DEFAULT_NFT_SETTINGS,
  type NftLossInput,
  type NftLossOutput,
  type NftSettings,
  nftLoss,
} from "./nft-loss.js";
export {
  accumulate,
  assertSameLayout,
  clipGradNorm,
  cloneParams,
  globalNorm,
  type ParamSet,
  softUpdate,
  zerosLike,
} from "./params.js";
export {
  type ChartSeries,
  escapeHtml,
  type GalleryItem,
  type ReportInput,
  renderReport,
  svgLineChart,
} from "./report.js";
export { Rng, type RngState } from "./rng.js";
export {
  InProcessRollouts,
  jobRequests,
  type RolloutBatch,
  type RolloutExecutor,
  type RolloutJob,
  runRollout,
} from "./rollouts.js";
export {
  checkOutputFolder,
  fsProblem,
  OutputFolderError,
  type OutputLayout,
  RUN_LAYOUT,
  RunDirectory,
} from "./run-directory.js";
export { claimOutDir, ResumeMismatchError, RUN_IDENTITY_FILE } from "./run-identity.js";
export {
  type DecodedSafetensors,
  decodeSafetensorsF32,
  encodeSafetensorsF32,
  SafetensorsFormatError,
} from "./safetensors-f32.js";
export { DpmSolverPlusPlus2MSampler, EulerSampler, HeunSampler, samplerByName } from "./samplers.js";
export { ToyFlowPolicy, type ToyFlowPolicyOptions, ToyRegionReward, toyPointOf } from "./toy-policy.js";
export type { NftBatch, NftStepResult, TrainablePolicy } from "./trainable-policy.js";
export {
  DEFAULT_TRAIN_CONFIG,
  PromptsExhaustedError,
  resolveTrainConfig,
  type StepMetrics,
  type TrainConfig,
  type TrainConfigInput,
  TrainingDivergedError,
  type TrainOptions,
  type TrainResult,
  train,
} from "./trainer.js";
export {
  type Benchmark,
  type BenchmarkItemResult,
  type BenchmarkReport,
  type BenchmarkRunOptions,
  checkSourceCount,
  type Editor,
  type EditRequest,
  INTERFACE_VERSION,
  type Reward,
  type RewardInput,
  type RewardOutput,
  type RgbImage,
  requestSources,
  requestWithSources,
  type SampleResult,
  type Sampler,
  type VelocityFn,
} from "./types.js";
