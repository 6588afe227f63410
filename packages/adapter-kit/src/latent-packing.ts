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

/**
 * Position ids [(h/2)·(w/2), 3] of packed image tokens for FLUX's 3-axis rotary embedding: (index, row, column),
 * row-major. The target image uses index 0 and Kontext's context image index 1, on its own grid from (0, 0).
 */
export function imageTokenIds(h: number, w: number, index: number): Float32Array {
  if (h % 2 !== 0 || w % 2 !== 0)
    throw new AdapterKitError(`latent ${h}×${w} cannot be packed in 2×2 patches: both sides must be even`);
  const th = h / 2;
  const tw = w / 2;
  const ids = new Float32Array(th * tw * 3);
  for (let r = 0; r < th; r++) {
    for (let c = 0; c < tw; c++) {
      const t = r * tw + c;
      ids[t * 3] = index;
      ids[t * 3 + 1] = r;
      ids[t * 3 + 2] = c;
    }
  }
  return ids;
}

function checkLatent(z: Float32Array, channels: number, h: number, w: number): void {
  if (h % 2 !== 0 || w % 2 !== 0)
    throw new AdapterKitError(`latent ${h}×${w} cannot be packed in 2×2 patches: both sides must be even`);
  if (z.length !== channels * h * w)
    throw new AdapterKitError(`latent has ${z.length} values, expected ${channels}×${h}×${w}`);
}
