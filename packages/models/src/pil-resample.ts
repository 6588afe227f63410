/**
 * Pillow's 8-bit convolution resize (`Image.resize(size, LANCZOS | BICUBIC)` on an RGB image), reproduced
 * bit for bit: diffusers' pipelines resize source images with PIL LANCZOS and the Qwen2-VL processor with
 * BICUBIC, and a VAE sees the rounding of every pixel, so "close" (sharp's lanczos3) is not enough.
 *
 * The algorithm (Pillow src/libImaging/Resample.c, the `*_8bpc` paths):
 * - separable: a horizontal pass, then a vertical pass on its uint8 result; a pass whose side is unchanged
 *   is skipped, and an unchanged size is a plain copy;
 * - per output pixel, a window of input pixels around the centre `(i + 0.5) · scale` (scale = in / out),
 *   with support = filter support · max(1, scale) and the window bounds rounded by truncating `± support + 0.5`;
 *   the weights `filter((j − centre + 0.5) / max(1, scale))` are normalised to sum 1;
 * - the weights become fixed point with 22 fractional bits (32 − 8 − 2), rounded half away from zero; each
 *   output is `(2^21 + Σ pixel · weight) >> 22`, clipped to 0..255.
 */

/** An 8-bit RGB image, rows top to bottom, pixels left to right, 3 bytes (R, G, B) per pixel. */
export interface RgbImageU8 {
  width: number;
  height: number;
  /** Length width · height · 3, HWC. */
  data: Uint8Array;
}

/** The PIL filters implemented: `Image.LANCZOS` (a = 3) and `Image.BICUBIC` (a = −0.5). */
export type PilResampleFilter = "lanczos" | "bicubic";

const PRECISION_BITS = 32 - 8 - 2;
const CHANNELS = 3;

interface Filter {
  support: number;
  weight: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<PilResampleFilter, Filter> = {
  // Windowed sinc, zero outside [−3, 3) (the interval is half-open in Pillow).
  lanczos: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  // Keys' cubic convolution with a = −0.5.
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

/** Per output index along one axis: the first input index, how many inputs, and their fixed-point weights. */
interface AxisCoefficients {
  start: Int32Array;
  count: Int32Array;
  /** `count[i]` weights for output i at `weights[i · stride ..]`. */
  weights: Int32Array;
  stride: number;
}

/** C's `(int)x` for the values met here: truncation toward zero. */
const truncToInt = (x: number): number => Math.trunc(x);

function axisCoefficients(inSize: number, outSize: number, filter: Filter): AxisCoefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = filter.support * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * stride);
  const raw = new Float64Array(stride);
  const one = 2 ** PRECISION_BITS;
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, truncToInt(centre - support + 0.5));
    const hi = Math.min(inSize, truncToInt(centre + support + 0.5));
    const n = hi - lo;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const w = filter.weight((j + lo - centre + 0.5) / filterScale);
      raw[j] = w;
      sum += w;
    }
    for (let j = 0; j < n; j++) {
      const w = sum !== 0 ? raw[j]! / sum : raw[j]!;
      // Round half away from zero, then truncate (C cast).
      weights[i * stride + j] = truncToInt(w < 0 ? w * one - 0.5 : w * one + 0.5);
    }
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, stride };
}

/** `(acc >> PRECISION_BITS)` clipped to a byte; acc includes the 2^(PRECISION_BITS−1) rounding offset. */
function clip8(acc: number): number {
  const v = Math.floor(acc / 2 ** PRECISION_BITS);
  return Math.min(255, Math.max(0, v));
}

const HALF = 2 ** (PRECISION_BITS - 1);

/** Horizontal pass over the rows `rowStart .. rowStart + rows` of `src` (width `srcWidth`). */
function resampleRows(
  src: Uint8Array,
  srcWidth: number,
  rowStart: number,
  rows: number,
  outWidth: number,
  c: AxisCoefficients,
): Uint8Array {
  const out = new Uint8Array(rows * outWidth * CHANNELS);
  for (let y = 0; y < rows; y++) {
    const rowBase = (y + rowStart) * srcWidth * CHANNELS;
    for (let x = 0; x < outWidth; x++) {
      const lo = c.start[x]!;
      const n = c.count[x]!;
      const k = x * c.stride;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let j = 0; j < n; j++) {
        const w = c.weights[k + j]!;
        const p = rowBase + (lo + j) * CHANNELS;
        r += src[p]! * w;
        g += src[p + 1]! * w;
        b += src[p + 2]! * w;
      }
      const o = (y * outWidth + x) * CHANNELS;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return out;
}

/** Vertical pass: `src` is `width` wide; output row y reads source rows `start[y] − rowOffset ..`. */
function resampleColumns(
  src: Uint8Array,
  width: number,
  rowOffset: number,
  outHeight: number,
  c: AxisCoefficients,
): Uint8Array {
  const out = new Uint8Array(outHeight * width * CHANNELS);
  const rowBytes = width * CHANNELS;
  for (let y = 0; y < outHeight; y++) {
    const lo = c.start[y]! - rowOffset;
    const n = c.count[y]!;
    const k = y * c.stride;
    for (let i = 0; i < rowBytes; i++) {
      let acc = HALF;
      for (let j = 0; j < n; j++) acc += src[(lo + j) * rowBytes + i]! * c.weights[k + j]!;
      out[y * rowBytes + i] = clip8(acc);
    }
  }
  return out;
}

function checkSize(what: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resamplePil: ${what} size must be positive integers, got ${width}×${height}`);
  }
}

/**
 * Resizes an RGB uint8 image to `width × height` exactly as Pillow's `Image.resize((width, height), filter)`
 * does (no `box`, no `reducing_gap`): the same bytes, not an approximation.
 */
export function resamplePil(
  image: RgbImageU8,
  width: number,
  height: number,
  filter: PilResampleFilter,
): RgbImageU8 {
  checkSize("input", image.width, image.height);
  checkSize("output", width, height);
  if (image.data.length !== image.width * image.height * CHANNELS) {
    throw new RangeError(
      `resamplePil: data has ${image.data.length} bytes, expected ${image.width}×${image.height}×3 = ` +
        `${image.width * image.height * CHANNELS} (RGB, HWC)`,
    );
  }
  const f = FILTERS[filter];
  if (!f) throw new RangeError(`resamplePil: unknown filter "${filter}" (lanczos or bicubic)`);
  const needHorizontal = width !== image.width;
  const needVertical = height !== image.height;
  if (!needHorizontal && !needVertical) {
    return { width, height, data: image.data.slice() };
  }
  const vertical = axisCoefficients(image.height, height, f);
  let data = image.data;
  // Rows of the source the vertical pass reads; the horizontal pass only computes those (as Pillow does).
  let rowOffset = 0;
  if (needHorizontal) {
    const horizontal = axisCoefficients(image.width, width, f);
    const first = needVertical ? vertical.start[0]! : 0;
    const last = needVertical ? vertical.start[height - 1]! + vertical.count[height - 1]! : image.height;
    data = resampleRows(image.data, image.width, first, last - first, width, horizontal);
    rowOffset = first;
  }
  if (needVertical) {
    data = resampleColumns(data, width, rowOffset, height, vertical);
  }
  return { width, height, data };
}
