export {
  askBenchJudge,
  type BenchJudge,
  type BenchJudgeAnswer,
  type BenchJudgeOptions,
  benchJudgeOptionsFromSpec,
  completionText,
  connectBenchJudge,
} from "./bench-judge.js";
export {
  type ChatClient,
  type ChatClientOptions,
  type ChatClientStats,
  type ChatCompletionResult,
  createChatClient,
} from "./chat-client.js";
export type {
  ChatCompletionRequest,
  ChatCompletionResponse,
  ChatContentPart,
  ChatErrorBody,
  ChatLogprob,
  ChatLogprobContent,
  ChatMessage,
} from "./chat-types.js";
export {
  checkRewardOutputs,
  composeRewards,
  RewardContractError,
  type WeightedReward,
} from "./compose-rewards.js";
export {
  JudgeConfigError,
  JudgeInputError,
  JudgeRequestError,
  JudgeResponseError,
  RewardItemError,
} from "./errors.js";
export { createFunctionReward } from "./function-reward.js";
export {
  decodeImageDataUrl,
  encodeImageDataUrl,
  hashImage,
  ImageDecodeError,
  type ImageEncoding,
  type ImageFormat,
} from "./image-data-url.js";
export {
  type JudgeAnswer,
  type JudgeFault,
  type JudgeModel,
  type JudgeModelReply,
  type JudgeModelRequest,
  parseJudgePrompt,
} from "./judge-model.js";
export {
  type JudgeVerdict,
  MAX_SCORE,
  parseChatCompletion,
  verdictFromCompletion,
} from "./judge-response.js";
export { type JudgeServer, type JudgeServerOptions, startJudgeServer } from "./judge-server.js";
export { describeJudgeSettings, type JudgeSettings, resolveJudgeSettings } from "./judge-settings.js";
export type { LatencySummary } from "./latency-stats.js";
export {
  createMllmJudgeReward,
  type MllmJudgeOptions,
  type MllmJudgeRaw,
  type MllmJudgeReward,
  type MllmJudgeStats,
} from "./mllm-judge-reward.js";
export { type ChatTemplate, loadChatTemplate, parseChatTemplate } from "./qwen-vl-chat.js";
export {
  createQwenVLJudge,
  openQwenVLJudge,
  type PreparedQwenVLPrompt,
  type QwenVLJudge,
  type QwenVLJudgeOptions,
  type QwenVLJudgeParts,
  type QwenVLJudgeStats,
  type QwenVLLogits,
  type QwenVLPrompt,
  rankLogits,
} from "./qwen-vl-judge.js";
export {
  createQwenVLJudgeReward,
  judgeMessages,
  type QwenVLJudgeRaw,
  type QwenVLJudgeReward,
  type QwenVLJudgeRewardOptions,
  type QwenVLJudgeRewardStats,
  qwenVLJudgeModel,
} from "./qwen-vl-judge-reward.js";
export {
  type QwenVLJudgeReplicaOptions,
  REPLICA_DIGIT_LEAN,
  writeQwenVLJudgeReplica,
} from "./qwen-vl-replica.js";
export {
  createRewardFromSpec,
  mllmOptionsFromSpec,
  parseRewardSpec,
  qwenVLOptionsFromSpec,
  type RewardFactory,
  type RewardSpecPart,
} from "./reward-spec.js";
export {
  expectedScore,
  parseScoreText,
  scoreDistribution,
  type TokenLogprob,
  yesProbability,
} from "./score.js";
export { createScriptedJudge, type ScriptedJudge, type ScriptedJudgeOptions } from "./scripted-judge.js";
export { createShapesJudgeModel, createShapesJudgeReward } from "./shapes-judge.js";
export {
  COT_SCORE_LOGIT_TEMPLATE,
  COT_SCORE_MARKER,
  COT_SCORE_SAMPLE_TEMPLATE,
  checkTemplate,
  defaultTemplate,
  JUDGE_MODES,
  type JudgeMode,
  type JudgeTemplate,
  renderTemplate,
  SCORE_LOGIT_TEMPLATE,
  SCORE_SAMPLE_TEMPLATE,
  YES_NO_TEMPLATE,
} from "./templates.js";
