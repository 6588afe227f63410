/**
 * The text the Qwen-Image-Edit pipelines give their Qwen2.5-VL encoder, and its token ids.
 *
 * diffusers (`QwenImageEditPipeline` / `QwenImageEditPlusPipeline`, `_get_qwen_prompt_embeds`) formats the
 * instruction into a chat template with a fixed system message; the Qwen2-VL processor then replaces each
 * `<|image_pad|>` with one pad per LLM image token (t·h·w / merge² of that image's patch grid) before
 * tokenizing, and the pipeline drops the first 64 hidden states (`prompt_template_encode_start_idx`):
 * the system block and `<|im_start|>user\n`.
 */
import type { TextTokenizer } from "@edit-r1/models";
import { QwenImageEditError } from "./qwen-image-edit-error.js";

/** v1 (Qwen-Image-Edit: one source image) or Plus (2509 / 2511: several, each introduced as "Picture k:"). */
export type QwenEditPromptVariant = "edit" | "edit-plus";

/** The system message of both pipelines' `prompt_template_encode`. */
export const QWEN_EDIT_SYSTEM_PROMPT =
  "Describe the key features of the input image (color, shape, size, texture, objects, background), then " +
  "explain how the user's text instruction should alter or modify the image. Generate a new image that meets " +
  "the user's requirements while maintaining consistency with the original input where appropriate.";

/** `prompt_template_encode_start_idx`: how many leading tokens' hidden states the pipelines drop. */
export const QWEN_EDIT_DROP_FIRST = 64;

/** The chat-template tokens the prompt uses. */
export const QWEN_SPECIAL_TOKENS = {
  imStart: "<|im_start|>",
  imEnd: "<|im_end|>",
  visionStart: "<|vision_start|>",
  visionEnd: "<|vision_end|>",
  imagePad: "<|image_pad|>",
} as const;

const { imStart, imEnd, visionStart, visionEnd, imagePad } = QWEN_SPECIAL_TOKENS;

/** One image's placeholder: the processor widens its `<|image_pad|>` to the image's token count. */
const IMAGE_PLACEHOLDER = `${visionStart}${imagePad}${visionEnd}`;

/**
 * The text before the user's turn content: the system block and `<|im_start|>user\n`, which is exactly
 * what the 64 dropped tokens are.
 */
export const QWEN_EDIT_PROMPT_PREFIX = `${imStart}system\n${QWEN_EDIT_SYSTEM_PROMPT}${imEnd}\n${imStart}user\n`;

/** What follows the user's turn content. */
export const QWEN_EDIT_PROMPT_SUFFIX = `${imEnd}\n${imStart}assistant\n`;

function checkImageCount(imageCount: number, variant: QwenEditPromptVariant): void {
  if (variant !== "edit" && variant !== "edit-plus") {
    throw new QwenImageEditError(`unknown Qwen-Image-Edit variant "${variant}" (edit or edit-plus)`);
  }
  if (!Number.isInteger(imageCount) || imageCount < 0) {
    throw new QwenImageEditError(`the image count must be a whole number ≥ 0, got ${imageCount}`);
  }
  if (variant === "edit" && imageCount !== 1) {
    throw new QwenImageEditError(
      `Qwen-Image-Edit (v1) edits exactly one source image, got ${imageCount}; use Qwen-Image-Edit-2509 or ` +
        "2511 (edit-plus) for several",
    );
  }
}

/**
 * The template text for an instruction, before the processor widens the image pads:
 * `<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{images}{prompt}<|im_end|>\n<|im_start|>assistant\n`
 * with `{images}` = `<|vision_start|><|image_pad|><|vision_end|>` for v1 (always one image), and for Plus
 * `Picture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: …` (no separator; empty without images).
 */
export function qwenEditPromptText(
  prompt: string,
  imageCount: number,
  variant: QwenEditPromptVariant,
): string {
  checkImageCount(imageCount, variant);
  let images = "";
  if (variant === "edit") images = IMAGE_PLACEHOLDER;
  else for (let i = 1; i <= imageCount; i++) images += `Picture ${i}: ${IMAGE_PLACEHOLDER}`;
  return `${QWEN_EDIT_PROMPT_PREFIX}${images}${prompt}${QWEN_EDIT_PROMPT_SUFFIX}`;
}

/** The token ids of the model's config.json that the prompt must agree with. */
export interface QwenEditPromptIds {
  /** `image_token_id` (151655 = `<|image_pad|>` in Qwen2.5-VL). */
  imageTokenId: number;
}

export interface EncodedQwenEditPrompt {
  /** The whole template's ids, image pads widened; no padding. */
  inputIds: Int32Array;
  /** How many leading positions' hidden states the pipeline drops (64). */
  dropFirst: number;
}

const count = (text: string, part: string): number => text.split(part).length - 1;

/**
 * The encoder's input ids for an instruction and its source images, as Qwen2VLProcessor makes them: the
 * template text (`qwenEditPromptText`) with the k-th `<|image_pad|>` replaced by `imageTokenCounts[k]` pads
 * (t·h·w / merge² of image k's grid), tokenized with the checkpoint's `processor/tokenizer.json`.
 * Throws when the tokenizer's `<|image_pad|>` is not `ids.imageTokenId`, or the instruction itself holds an
 * image pad (the processor would take it for another image).
 */
export function encodeQwenEditPrompt(
  tokenizer: TextTokenizer,
  prompt: string,
  imageTokenCounts: readonly number[],
  variant: QwenEditPromptVariant,
  ids: QwenEditPromptIds,
): EncodedQwenEditPrompt {
  for (const n of imageTokenCounts) {
    if (!Number.isInteger(n) || n < 1) {
      throw new QwenImageEditError(
        `image token counts must be positive whole numbers (t·h·w / merge² of each image's grid), got ` +
          `[${imageTokenCounts.join(", ")}]`,
      );
    }
  }
  if (prompt.includes(imagePad)) {
    throw new QwenImageEditError(
      `the instruction contains "${imagePad}", which the processor would take for an image; remove it`,
    );
  }
  const padId = tokenizer.tokenizer.token_to_id(imagePad);
  if (padId !== ids.imageTokenId) {
    throw new QwenImageEditError(
      `${tokenizer.description}: "${imagePad}" is token ${padId ?? "(missing)"}, but the text encoder's ` +
        `image_token_id is ${ids.imageTokenId}; the tokenizer (processor/tokenizer.json) and text_encoder/ ` +
        "are from different models",
    );
  }
  const text = qwenEditPromptText(prompt, imageTokenCounts.length, variant);
  // Widen the k-th pad to its image's count, as the processor does (it goes through a placeholder so that
  // the pads it inserts are not taken for later images; splitting on the pads does the same).
  const pieces = text.split(imagePad);
  let widened = pieces[0]!;
  for (let k = 0; k < imageTokenCounts.length; k++) {
    widened += imagePad.repeat(imageTokenCounts[k]!) + pieces[k + 1]!;
  }
  const inputIds = Int32Array.from(tokenizer.tokenizer.encode(widened).ids);
  const total = imageTokenCounts.reduce((a, b) => a + b, 0);
  const pads = inputIds.reduce((n, id) => n + (id === ids.imageTokenId ? 1 : 0), 0);
  if (pads !== total || count(widened, imagePad) !== total) {
    throw new QwenImageEditError(
      `${tokenizer.description}: the prompt has ${pads} image pad tokens after tokenizing, expected ${total}; ` +
        `the tokenizer does not treat "${imagePad}" as one special token`,
    );
  }
  return { inputIds, dropFirst: QWEN_EDIT_DROP_FIRST };
}
