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
