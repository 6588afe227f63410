export {
  applyEdit,
  type ComposeEdit,
  EDIT_CATEGORIES,
  type Edit,
  type EditCategory,
  editCategory,
  type SimpleEdit,
} from "./edit.js";
export { crc32, encodePng } from "./encode-png.js";
export {
  ImageMismatchError,
  InstructionTooLongError,
  InvalidEditError,
  InvalidOptionsError,
  InvalidSceneError,
  RequirementParseError,
  ShapesError,
} from "./errors.js";
export {
  type GenerateEditsOptions,
  generateEdits,
  HELDOUT_MODULUS,
  randomEdit,
  randomScene,
  type ShapesEdit,
  type Split,
  splitOfKey,
} from "./generate-edits.js";
export { instructionFor, requirementFor } from "./instruction.js";
export {
  DEFAULT_JUDGE_SPREAD,
  type JudgeDistribution,
  type JudgeDistributionOptions,
  judgeDistribution,
  judgeDistributionFromScore,
  judgeFromRequirement,
  MAX_JUDGE_SCORE,
  SCORE_TOKENS,
} from "./judge-distribution.js";
export { COLOR_NAMES, type ColorName, isColorName, PALETTE } from "./palette.js";
export { renderScene } from "./render-scene.js";
export {
  canonicalKey,
  formatRequirementTag,
  type ParsedRequirement,
  parseRequirement,
  REQUIREMENT_TAG_VERSION,
} from "./requirement-tag.js";
export { assertRgbImage, type RgbImage } from "./rgb-image.js";
export { Rng } from "./rng.js";
export {
  CELL_COUNT,
  CELL_NAMES,
  type CellName,
  DEFAULT_CANVAS,
  defaultShapeSize,
  isShapeKind,
  MAX_CANVAS,
  MIN_CANVAS,
  type Scene,
  SHAPE_KINDS,
  type Shape,
  type ShapeKind,
  shapeAt,
  shapeName,
  shapeOrigin,
  shapeSizeRange,
  sortShapes,
  validateScene,
} from "./scene.js";
export {
  DEFAULT_VERIFY_TOLERANCE,
  type VerifyOptions,
  type VerifyResult,
  verify,
  verifyDetails,
} from "./verify.js";
export {
  instructionWords,
  MAX_INSTRUCTION_TOKENS,
  PAD_ID,
  PAD_TOKEN,
  tokenize,
  UNKNOWN_ID,
  UNKNOWN_TOKEN,
  unknownWords,
  VOCABULARY,
} from "./vocabulary.js";
export {
  type WriteEditR1JsonlOptions,
  type WrittenEditR1Jsonl,
  writeEditR1Jsonl,
} from "./write-edit-r1-jsonl.js";
