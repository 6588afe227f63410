import { checkSourceCount, type EditRequest } from "@edit-r1/core";
import { instructionWords } from "@edit-r1/shapes";
import { TinyAdapterError } from "./errors.js";
import { packImage } from "./pack-image.js";
import { TINY_IMAGE_SIZE, TINY_LATENT_SIZE } from "./tiny-config.js";

/** What the tiny model is conditioned on, for a batch: packed source tokens and one-hot instructions. */
export interface TinyConditions {
  /** [B, 256, 12] packed source images in [-1, 1]. */
  context: Float32Array;
  /** [B, T, V] one-hot word ids, padding = word 0. */
  text: Float32Array;
}

/** Throws a TinyAdapterError unless the request's source image is TINY_IMAGE_SIZE² RGB. */
export function checkTinyImage(request: EditRequest): void {
  checkSourceCount(request, 1, "tiny");
  const { width, height, data } = request.source;
  if (width !== TINY_IMAGE_SIZE || height !== TINY_IMAGE_SIZE) {
    throw new TinyAdapterError(
      `request "${request.key}": the tiny model edits ${TINY_IMAGE_SIZE}×${TINY_IMAGE_SIZE} images only, ` +
        `got ${width}×${height}; resize the source (nearest neighbour keeps flat colours) or use another adapter.`,
    );
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new TinyAdapterError(
      `request "${request.key}": source data must be ${width * height * 3} RGB bytes, got ${data?.length}.`,
    );
  }
}

/** Word ids of an instruction in `vocabulary`, padded with 0 to `length`; unknown or too many words are errors. */
export function tinyWordIds(
  instruction: string,
  vocabulary: readonly string[],
  length: number,
  key = "instruction",
): Int32Array {
  const index = new Map(vocabulary.map((w, i) => [w, i]));
  const words = instructionWords(instruction);
  const unknown = words.filter((w) => !index.has(w));
  if (unknown.length > 0) {
    throw new TinyAdapterError(
      `${key}: the tiny model does not know the word(s) ${unknown.map((w) => JSON.stringify(w)).join(", ")} ` +
        `in ${JSON.stringify(instruction)}; it knows only the shapes world's words: ` +
        `${vocabulary.filter((w) => !/^<.*>$/.test(w)).join(" ")}. Rephrase with those words ` +
        '(e.g. "remove the red circle").',
    );
  }
  if (words.length > length) {
    throw new TinyAdapterError(
      `${key}: ${words.length} words, more than the ${length} the tiny model reads; shorten ${JSON.stringify(instruction)}.`,
    );
  }
  if (words.length === 0) throw new TinyAdapterError(`${key}: the instruction is empty.`);
  const ids = new Int32Array(length);
  words.forEach((w, i) => {
    ids[i] = index.get(w)!;
  });
  return ids;
}

/** Packs a batch of requests for the velocity graph. */
export function tinyConditions(
  requests: readonly EditRequest[],
  vocabulary: readonly string[],
  textTokens: number,
): TinyConditions {
  const B = requests.length;
  const V = vocabulary.length;
  const context = new Float32Array(B * TINY_LATENT_SIZE);
  const text = new Float32Array(B * textTokens * V);
  requests.forEach((r, b) => {
    checkTinyImage(r);
    context.set(packImage(r.source), b * TINY_LATENT_SIZE);
    const ids = tinyWordIds(r.instruction, vocabulary, textTokens, `request "${r.key}"`);
    ids.forEach((id, i) => {
      text[(b * textTokens + i) * V + id] = 1;
    });
  });
  return { context, text };
}
