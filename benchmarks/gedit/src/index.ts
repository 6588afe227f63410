export {
  createGEditBenchmark,
  GEDIT_JUDGE_MAX_TOKENS,
  type GEditBenchmark,
  type GEditBenchmarkOptions,
  type GEditFailureKind,
  type GEditItemRecord,
  type GEditMetrics,
  type GEditReport,
  gEditMarkdown,
  gEditMetrics,
} from "./gedit-benchmark.js";
export {
  area512Size,
  GEDIT_PREPROCESS,
  type GEditPreprocess,
  judgeJpegDataUrl,
  preprocessForJudge,
  resizeRgb,
} from "./gedit-preprocess.js";
export {
  GEDIT_LANGUAGES,
  GEDIT_TASK_NAMES,
  GEDIT_TASK_TYPES,
  type GEditLanguage,
  type GEditTaskType,
  isGEditTaskType,
} from "./gedit-tasks.js";
export {
  DEFAULT_GEDIT_DATA,
  type GEditData,
  GEditDataError,
  type GEditImages,
  type GEditItem,
  type LoadGEditOptions,
  loadGEdit,
  readGEditImages,
} from "./load-gedit.js";
export { parseVieScoreReply, VieScoreReplyError } from "./parse-viescore-reply.js";
export { renderQualityPrompt, renderSemanticPrompt, VIESCORE_PROMPT_VERSION } from "./viescore-prompts.js";
