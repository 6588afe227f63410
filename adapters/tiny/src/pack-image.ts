import { packLatents, unpackLatents } from "@edit-r1/adapter-kit";
import type { RgbImage } from "@edit-r1/core";
import { TinyAdapterError } from "./errors.js";
import { TINY_PATCH } from "./tiny-config.js";

function checkSide(what: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width % TINY_PATCH || height % TINY_PATCH) {
    throw new TinyAdapterError(
      `${what}: ${width}×${height} cannot be packed in ${TINY_PATCH}×${TINY_PATCH} patches; use even side lengths.`,
    );
  }
}

/**
 * An RGB image as packed tokens in [-1, 1]: FLUX's 2×2 packing (the shared `packLatents`) applied to pixels, so
 * token (r, c) holds the pixels (2r + py, 2c + px) and its channel index is colour·4 + py·2 + px (models.md §2.4,
 * with RGB in place of the 16 latent channels). Tokens are row-major, matching the position ids.
 */
export function packImage(image: RgbImage): Float32Array {
  const { width, height, data } = image;
  checkSide("packImage", width, height);
  if (data.length !== width * height * 3) {
    throw new TinyAdapterError(
      `packImage: data holds ${data.length} bytes but a ${width}×${height} RGB image needs ${width * height * 3}.`,
    );
  }
  const n = width * height;
  const chw = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) for (let ch = 0; ch < 3; ch++) chw[ch * n + i] = data[i * 3 + ch]! / 127.5 - 1;
  return packLatents(chw, 3, height, width);
}

/** The inverse of packImage, clamped to [-1, 1] and rounded to bytes. */
export function unpackImage(tokens: ArrayLike<number>, width: number, height: number): RgbImage {
  checkSide("unpackImage", width, height);
  if (tokens.length !== width * height * 3) {
    throw new TinyAdapterError(
      `unpackImage: ${tokens.length} values cannot be a ${width}×${height} image (needs ${width * height * 3}).`,
    );
  }
  const chw = unpackLatents(Float32Array.from(tokens), 3, height, width);
  const n = width * height;
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const v = chw[ch * n + i]!;
      // NaN (a diverged model) maps to mid-grey rather than silently to 0.
      const clamped = Number.isNaN(v) ? 0 : Math.min(1, Math.max(-1, v));
      data[i * 3 + ch] = Math.round((clamped + 1) * 127.5);
    }
  }
  return { width, height, data };
}
