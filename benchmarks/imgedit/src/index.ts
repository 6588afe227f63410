export {
  type BenchJudge,
  type BenchJudgeOptions,
  benchJudgeOptionsFromSpec,
  completionText,
  connectBenchJudge,
} from "./bench-judge.js";
export {
  createImgEditBenchmark,
  IMGEDIT_BENCHMARK_NAME,
  type ImgEditBenchmark,
  type ImgEditBenchmarkOptions,
  type ImgEditFailureKind,
  type ImgEditItemRecord,
  type ImgEditReport,
  imgEditMarkdown,
} from "./imgedit-benchmark.js";
export {
  IMGEDIT_CATEGORIES,
  IMGEDIT_CATEGORY_NAMES,
  IMGEDIT_RUBRIC_VERSION,
  IMGEDIT_RUBRICS,
  type ImgEditCategory,
  type ImgEditCriterion,
  type ImgEditRubric,
  isImgEditCategory,
  renderImgEditPrompt,
} from "./imgedit-rubrics.js";
export { ItemJournal } from "./item-journal.js";
export {
  DEFAULT_IMGEDIT_DATA,
  IMGEDIT_JSON_CANDIDATES,
  type ImgEditData,
  ImgEditDataError,
  type ImgEditItem,
  type LoadImgEditOptions,
  loadImgEditBasic,
} from "./load-imgedit-basic.js";
export { ImgEditReplyError, type ImgEditScores, parseImgEditReply } from "./parse-imgedit-reply.js";
export { claimOutDir, ResumeMismatchError, RUN_IDENTITY_FILE } from "./run-identity.js";
