import { AdapterKitError } from "./errors.js";

/**
 * The 2×2 packing FLUX and Qwen-Image share: a latent [C, h, w] (one sample, row-major) becomes tokens
 * [(h/2)·(w/2), 4C], token (r, c) holding channel k's 2×2 patch at index k·4 + dy·2 + dx, tokens row-major.
 */
export function packLatents(z: Float32Array, channels: number, h: number, w: number): Float32Array {
  checkLatent(z, channels, h, w);
  const out = new Float32Array(z.length);
  const tw = w / 2;
  for (let k = 0; k < channels; k++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const token = (y >> 1) * tw + (x >> 1);
        const feature = k * 4 + (y & 1) * 2 + (x & 1);
        out[token * channels * 4 + feature] = z[(k * h + y) * w + x]!;
      }
    }
  }
  return out;
}

/** The inverse of `packLatents`: tokens [(h/2)·(w/2), 4C] back to a latent [C, h, w]. */
export function unpackLatents(tokens: Float32Array, channels: number, h: number, w: number): Float32Array {
  checkLatent(tokens, channels, h, w);
  const out = new Float32Array(tokens.length);
  const tw = w / 2;
  for (let k = 0; k < channels; k++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const token = (y >> 1) * tw + (x >> 1);
        out[(k * h + y) * w + x] = tokens[token * channels * 4 + k * 4 + (y & 1) * 2 + (x & 1)]!;
      }
    }
  }
  return out;
}

function checkLatent(z: Float32Array, channels: number, h: number, w: number): void {
  if (h % 2 !== 0 || w % 2 !== 0)
    throw new AdapterKitError(`latent ${h}×${w} cannot be packed in 2×2 patches: both sides must be even`);
  if (z.length !== channels * h * w)
    throw new AdapterKitError(`latent has ${z.length} values, expected ${channels}×${h}×${w}`);
}
