export {
  adapter,
  createQwenImageEditAdapter,
  QWEN_IMAGE_EDIT_REPO,
  type QwenImageEditAdapterSettings,
} from "./adapter.js";
export {
  calculateDimensions,
  PIPELINE_AREAS,
  type QwenImageEditAreas,
  type QwenImageEditSizes,
  qwenImageEditSizes,
} from "./image-sizes.js";
export {
  type EditImageOptions,
  editImage,
  type LoadQwenImageEditOptions,
  loadQwenImageEdit,
  qwenImageEditSettings,
} from "./load.js";
export {
  type EncodedQwenEditPrompt,
  encodeQwenEditPrompt,
  QWEN_EDIT_DROP_FIRST,
  QWEN_EDIT_PROMPT_PREFIX,
  QWEN_EDIT_PROMPT_SUFFIX,
  QWEN_EDIT_SYSTEM_PROMPT,
  QWEN_SPECIAL_TOKENS,
  type QwenEditPromptIds,
  type QwenEditPromptVariant,
  qwenEditPromptText,
} from "./prompt.js";
export {
  guide,
  type PreparedQwenEdit,
  type PromptEncoder,
  QWEN_EDIT_BENCHMARK_SETTINGS,
  QWEN_EDIT_PIPELINE_SETTINGS,
  QWEN_EDIT_ROLLOUT_SETTINGS,
  QwenImageEditEditor,
  type QwenImageEditEditorOptions,
  type QwenImageEditSettings,
  type SourceLatents,
  type TextCondition,
} from "./qwen-image-edit-editor.js";
export { QwenImageEditError } from "./qwen-image-edit-error.js";
export {
  openQwenImageEditModel,
  type QwenImageEditModel,
  type QwenImageEditVariant,
  type QwenTextEncoder,
} from "./qwen-image-edit-model.js";
export {
  type PlanQwenImageEditPolicyOptions,
  planQwenImageEditPolicy,
  QWEN_IMAGE_EDIT_SHAPES,
  type ShapeOnlyQwenPolicy,
} from "./qwen-image-edit-plan.js";
export {
  type LoadQwenImageEditPolicyOptions,
  loadQwenImageEditPolicy,
  type QwenImageEditPolicy,
  qwenImageEditBucket,
} from "./qwen-image-edit-policy.js";
export { QwenPromptEncoder } from "./qwen-prompt-encoder.js";
export {
  type QwenImageEditReplicaOptions,
  type QwenImageEditReplicaVariant,
  writeQwenImageEditReplica,
} from "./replica.js";
