// The journal, run identity and judge helpers moved to core and rewards; re-exported so code that
// imported them from here keeps working.
export { claimOutDir, ItemJournal, ResumeMismatchError, RUN_IDENTITY_FILE } from "@edit-r1/core";
export {
  type BenchJudge,
  type BenchJudgeOptions,
  benchJudgeOptionsFromSpec,
  completionText,
  connectBenchJudge,
} from "@edit-r1/rewards";
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
