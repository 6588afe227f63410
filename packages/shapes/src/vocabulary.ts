import { InstructionTooLongError } from "./errors.js";
import { COLOR_NAMES } from "./palette.js";
import { SHAPE_KINDS } from "./scene.js";

export const PAD_TOKEN = "<pad>";
export const UNKNOWN_TOKEN = "<unk>";
export const PAD_ID = 0;
export const UNKNOWN_ID = 1;

/**
 * Every word any generated instruction uses; the tiny model embeds words by their index here.
 * The order is frozen (shipped weights depend on it): new words may only be appended.
 */
export const VOCABULARY: readonly string[] = Object.freeze([
  PAD_TOKEN,
  UNKNOWN_TOKEN,
  ...["add", "remove", "replace", "change", "move", "make", "extract"],
  ...["a", "an", "the", "at", "to", "with", "onto", "and", "background"],
  ...["top", "bottom", "left", "right", "center"],
  ...COLOR_NAMES,
  ...SHAPE_KINDS,
]);

/** Longest generated instruction is 17 words (a compose of replace and move); 20 leaves room. */
export const MAX_INSTRUCTION_TOKENS = 20;

const ID_BY_WORD = new Map(VOCABULARY.map((w, i) => [w, i]));

/** Lower-case words, punctuation dropped: how instructions are split into tokens. */
export function instructionWords(instruction: string): string[] {
  return instruction
    .toLowerCase()
    .replace(/[^a-z\s]/g, " ")
    .split(/\s+/)
    .filter((w) => w.length > 0);
}

/** Words of an instruction that are not in VOCABULARY (empty for every generated instruction). */
export function unknownWords(instruction: string): string[] {
  return instructionWords(instruction).filter((w) => !ID_BY_WORD.has(w));
}

/**
 * Word ids of an instruction, padded with PAD_ID to `maxLength`; unknown words become UNKNOWN_ID.
 * Throws InstructionTooLongError rather than cutting an instruction short, since a truncated
 * edit instruction would silently ask for a different edit.
 */
export function tokenize(instruction: string, maxLength = MAX_INSTRUCTION_TOKENS): Int32Array {
  const words = instructionWords(instruction);
  if (words.length > maxLength) {
    throw new InstructionTooLongError(
      `instruction has ${words.length} words, more than the ${maxLength} tokens allowed: ` +
        `${JSON.stringify(instruction)}; shorten it or pass a larger maxLength.`,
    );
  }
  const ids = new Int32Array(maxLength); // zero-filled = PAD_ID
  words.forEach((w, i) => {
    ids[i] = ID_BY_WORD.get(w) ?? UNKNOWN_ID;
  });
  return ids;
}
