import type { RgbImage } from "@edit-r1/core";
import { TinyAdapterError } from "./errors.js";
import { TINY_PATCH, TINY_TOKEN_CHANNELS } from "./tiny-config.js";

function checkSide(what: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width % TINY_PATCH || height % TINY_PATCH) {
    throw new TinyAdapterError(
      `${what}: ${width}×${height} cannot be packed in ${TINY_PATCH}×${TINY_PATCH} patches; use even side lengths.`,
    );
  }
}

/**
 * An RGB image as packed tokens in [-1, 1]: FLUX's 2×2 packing applied to pixels, so token (r, c) holds the
 * pixels (2r + py, 2c + px) and its channel index is colour·4 + py·2 + px (models.md §2.4, with RGB in place of
 * the 16 latent channels). Tokens are row-major, matching the position ids.
 */
export function packImage(image: RgbImage): Float32Array {
  const { width, height, data } = image;
  checkSide("packImage", width, height);
  if (data.length !== width * height * 3) {
    throw new TinyAdapterError(
      `packImage: data holds ${data.length} bytes but a ${width}×${height} RGB image needs ${width * height * 3}.`,
    );
  }
  const gw = width / TINY_PATCH;
  const out = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const r = y >> 1;
    const py = y & 1;
    for (let x = 0; x < width; x++) {
      const token = r * gw + (x >> 1);
      const sub = py * 2 + (x & 1);
      const pixel = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        out[token * TINY_TOKEN_CHANNELS + ch * 4 + sub] = data[pixel + ch]! / 127.5 - 1;
      }
    }
  }
  return out;
}

/** The inverse of packImage, clamped to [-1, 1] and rounded to bytes. */
export function unpackImage(tokens: ArrayLike<number>, width: number, height: number): RgbImage {
  checkSide("unpackImage", width, height);
  if (tokens.length !== width * height * 3) {
    throw new TinyAdapterError(
      `unpackImage: ${tokens.length} values cannot be a ${width}×${height} image (needs ${width * height * 3}).`,
    );
  }
  const gw = width / TINY_PATCH;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const r = y >> 1;
    const py = y & 1;
    for (let x = 0; x < width; x++) {
      const token = r * gw + (x >> 1);
      const sub = py * 2 + (x & 1);
      const pixel = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const v = tokens[token * TINY_TOKEN_CHANNELS + ch * 4 + sub]!;
        // NaN (a diverged model) maps to mid-grey rather than silently to 0.
        const clamped = Number.isNaN(v) ? 0 : Math.min(1, Math.max(-1, v));
        data[pixel + ch] = Math.round((clamped + 1) * 127.5);
      }
    }
  }
  return { width, height, data };
}
