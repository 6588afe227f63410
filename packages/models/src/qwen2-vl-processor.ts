/**
 * The Qwen2-VL / Qwen2.5-VL image processor (transformers' numpy `Qwen2VLImageProcessor`), which turns an
 * RGB image into the vision tower's patch rows: `smart_resize` picks a size whose sides are multiples of
 * patch·merge (28) within a pixel budget, the image is resized to it with PIL BICUBIC, rescaled by 1/255,
 * normalised with the CLIP mean/std, duplicated in time to `temporal_patch_size` frames and cut into
 * 14×14 patches, listed merge unit by merge unit (the 2×2 patches the merger joins are consecutive rows).
 */
import { EditR1Error } from "@edit-r1/engine";
import { configReader } from "./config-reader.js";
import { ModelConfigError } from "./model-config-error.js";
import { type PilResampleFilter, type RgbImageU8, resamplePil } from "./pil-resample.js";

/** An image the processor cannot take (a side out of range, a size that is not a multiple of the patch grid). */
export class Qwen2VLProcessorError extends EditR1Error {
  override readonly name = "Qwen2VLProcessorError";
}

/** A Qwen2-VL `preprocessor_config.json`, as the processor uses it. */
export interface Qwen2VLProcessorConfig {
  /** Smallest pixel count (height·width) smart_resize allows (`min_pixels`, or `size.shortest_edge`). */
  minPixels: number;
  /** Largest pixel count smart_resize allows (`max_pixels`, or `size.longest_edge`). */
  maxPixels: number;
  /** Side of a vision patch (14). */
  patchSize: number;
  /** Frames per patch (2): a still image is repeated to fill them. */
  temporalPatchSize: number;
  /** Side of the square of patches the merger joins into one LLM token (2). */
  mergeSize: number;
  doRescale: boolean;
  /** 1/255. */
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /** The resize filter (`resample`, a PIL enum: 3 = BICUBIC, 1 = LANCZOS). */
  resample: PilResampleFilter;
}

/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, the processor's defaults. */
const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/**
 * Defaults: those of Qwen-Image's `processor/preprocessor_config.json` (Qwen2.5-VL's: 56·56 = 3136 to
 * 12845056 pixels), not the smaller `max_pixels` of transformers' class default.
 */
const DEFAULTS: Record<string, unknown> = {
  min_pixels: 3136,
  max_pixels: 12845056,
  patch_size: 14,
  temporal_patch_size: 2,
  merge_size: 2,
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: CLIP_MEAN,
  image_std: CLIP_STD,
  resample: 3,
};

/** PIL's `Image.Resampling` values this package can reproduce. */
const PIL_FILTERS: Record<number, PilResampleFilter> = { 1: "lanczos", 3: "bicubic" };

/**
 * Reads a Qwen2-VL `preprocessor_config.json`. The pixel limits come from `min_pixels` / `max_pixels`, or
 * from the newer `size: {shortest_edge, longest_edge}` (which, despite the names, are pixel counts);
 * `min_pixels` / `max_pixels` win when both are given, as in transformers. `source` names the file in errors.
 */
export function parseQwen2VLProcessorConfig(
  json: Record<string, unknown>,
  source = "preprocessor_config.json",
): Qwen2VLProcessorConfig {
  const size = json.size;
  const limits: Record<string, unknown> = {};
  if (size !== undefined && size !== null) {
    const s = size as Record<string, unknown>;
    if (typeof size !== "object" || !("shortest_edge" in s) || !("longest_edge" in s)) {
      throw new ModelConfigError(
        `${source}: "size" must hold "shortest_edge" and "longest_edge" (the min and max pixel counts), ` +
          `got ${JSON.stringify(size)}`,
      );
    }
    limits.min_pixels = s.shortest_edge;
    limits.max_pixels = s.longest_edge;
  }
  for (const k of ["min_pixels", "max_pixels"]) {
    if (json[k] !== undefined && json[k] !== null) limits[k] = json[k];
  }
  const given = Object.fromEntries(
    Object.entries({ ...json, ...limits }).filter(([, v]) => v !== undefined && v !== null),
  );
  const { get, int } = configReader(given, DEFAULTS, source);
  const minPixels = int("min_pixels");
  const maxPixels = int("max_pixels");
  if (minPixels > maxPixels) {
    throw new ModelConfigError(
      `${source}: min_pixels (${minPixels}) is larger than max_pixels (${maxPixels})`,
    );
  }
  const bool = (k: string): boolean => {
    const v = get(k);
    if (typeof v !== "boolean") {
      throw new ModelConfigError(`${source}: "${k}" must be true or false, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const triple = (k: string): [number, number, number] => {
    let v = get(k);
    if (typeof v === "number") v = [v, v, v];
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === "number" && Number.isFinite(x))) {
      throw new ModelConfigError(
        `${source}: "${k}" must be three numbers (R, G, B), got ${JSON.stringify(v)}`,
      );
    }
    return [v[0], v[1], v[2]];
  };
  const imageStd = triple("image_std");
  if (!imageStd.every((s) => s > 0)) {
    throw new ModelConfigError(`${source}: "image_std" must be positive, got ${JSON.stringify(imageStd)}`);
  }
  const rescaleFactor = get("rescale_factor");
  if (typeof rescaleFactor !== "number" || !(rescaleFactor > 0)) {
    throw new ModelConfigError(
      `${source}: "rescale_factor" must be a positive number, got ${JSON.stringify(rescaleFactor)}`,
    );
  }
  const resample = PIL_FILTERS[get("resample") as number];
  if (resample === undefined) {
    throw new ModelConfigError(
      `${source}: "resample" ${JSON.stringify(get("resample"))} is not supported (3 = BICUBIC, 1 = LANCZOS)`,
    );
  }
  return {
    minPixels,
    maxPixels,
    patchSize: int("patch_size"),
    temporalPatchSize: int("temporal_patch_size"),
    mergeSize: int("merge_size"),
    doRescale: bool("do_rescale"),
    rescaleFactor,
    doNormalize: bool("do_normalize"),
    imageMean: triple("image_mean"),
    imageStd,
    resample,
  };
}

/** Python's `round` on a float: halves go to the even integer. */
function pythonRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Python's `str` of a float (`250.0`, not `250`), for messages that quote the reference's. */
function pythonFloat(x: number): string {
  return Number.isInteger(x) && Math.abs(x) < 1e16 ? `${x}.0` : String(x);
}

export interface SmartResizeOptions {
  /** Both sides become multiples of this (patch_size · merge_size = 28). */
  factor?: number;
  minPixels: number;
  maxPixels: number;
}

/** The aspect ratio above which transformers' smart_resize refuses an image. */
const MAX_ASPECT_RATIO = 200;

/**
 * transformers' `smart_resize`: each side rounded (Python `round`, half to even, so a side of 28k + 14
 * goes to the even multiple) to a multiple of `factor`; when that holds more than `maxPixels`, both sides
 * are scaled by √(h·w / maxPixels) and floored to multiples of `factor` (at least `factor`); when fewer than
 * `minPixels`, scaled up by √(minPixels / (h·w)) and ceiled. Sides below `factor` are allowed (they are
 * scaled up). Throws when the longer side is more than 200 times the shorter one.
 */
export function smartResize(
  height: number,
  width: number,
  options: SmartResizeOptions,
): { height: number; width: number } {
  const { factor = 28, minPixels, maxPixels } = options;
  for (const [k, v] of [
    ["height", height],
    ["width", width],
    ["factor", factor],
    ["minPixels", minPixels],
    ["maxPixels", maxPixels],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new Qwen2VLProcessorError(`smartResize: ${k} must be a positive integer, got ${v}`);
    }
  }
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT_RATIO) {
    throw new Qwen2VLProcessorError(
      `absolute aspect ratio must be smaller than ${MAX_ASPECT_RATIO}, got ${pythonFloat(ratio)} ` +
        `(image ${width}×${height}, width×height); crop it before editing`,
    );
  }
  let h = pythonRound(height / factor) * factor;
  let w = pythonRound(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

/** The patch rows of one image and its grid in patches. */
export interface Qwen2VLPatches {
  /** `t·h·w` rows of `3 · temporal_patch_size · patch_size²` (1176) values each, row-major. */
  pixelValues: Float32Array;
  /** `[t, h, w]`: frames / temporal_patch_size, height / patch_size, width / patch_size. */
  grid: [number, number, number];
}

/**
 * The 256 values each uint8 level of channel `c` becomes, computed in the numpy processor's order:
 * `x · rescale_factor` in float64 rounded to float32, then `(x − mean) / std` in float32 (mean and std
 * rounded to float32 first).
 */
function levelTable(config: Qwen2VLProcessorConfig, c: number): Float32Array {
  const table = new Float32Array(256);
  const mean = Math.fround(config.imageMean[c]!);
  const std = Math.fround(config.imageStd[c]!);
  for (let v = 0; v < 256; v++) {
    let x = config.doRescale ? Math.fround(v * config.rescaleFactor) : v;
    // float32 operands: rounding the float64 result once gives the float32 operation's result.
    if (config.doNormalize) x = Math.fround(Math.fround(x - mean) / std);
    table[v] = x;
  }
  return table;
}

function checkImage(image: RgbImageU8, what: string): void {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Qwen2VLProcessorError(`${what}: image size must be positive integers, got ${width}×${height}`);
  }
  if (data.length !== width * height * 3) {
    throw new Qwen2VLProcessorError(
      `${what}: data has ${data.length} bytes, expected ${width}×${height}×3 = ${width * height * 3} (RGB, HWC)`,
    );
  }
}

/**
 * The processor's patch rows of an image that is already at its smart_resize size (no resize here; see
 * `qwen2VLResizeAndPatch`). Rows are in merge-unit order: for each `merge×merge` block of patches
 * (row-major over blocks), its patches row-major; each row lists (channel, frame, y, x) with x fastest.
 * Throws when a side is not a multiple of patch_size · merge_size.
 */
export function qwen2VLPixelValues(image: RgbImageU8, config: Qwen2VLProcessorConfig): Qwen2VLPatches {
  checkImage(image, "qwen2VLPixelValues");
  const { width, height, data } = image;
  const p = config.patchSize;
  const m = config.mergeSize;
  const frames = config.temporalPatchSize;
  const unit = p * m;
  if (height % unit !== 0 || width % unit !== 0) {
    throw new Qwen2VLProcessorError(
      `qwen2VLPixelValues: the image is ${width}×${height} (width×height); both sides must be multiples of ` +
        `patch_size·merge_size = ${unit}. Resize it to its smartResize size first (qwen2VLResizeAndPatch does).`,
    );
  }
  const gh = height / p;
  const gw = width / p;
  const tables = [0, 1, 2].map((c) => levelTable(config, c));
  const patchArea = p * p;
  const rowLength = 3 * frames * patchArea;
  const out = new Float32Array(gh * gw * rowLength);
  let row = 0;
  for (let by = 0; by < gh / m; by++) {
    for (let bx = 0; bx < gw / m; bx++) {
      for (let my = 0; my < m; my++) {
        for (let mx = 0; mx < m; mx++) {
          const y0 = (by * m + my) * p;
          const x0 = (bx * m + mx) * p;
          const base = row * rowLength;
          for (let c = 0; c < 3; c++) {
            const table = tables[c]!;
            const cBase = base + c * frames * patchArea;
            for (let py = 0; py < p; py++) {
              let src = ((y0 + py) * width + x0) * 3 + c;
              const dst = cBase + py * p;
              for (let px = 0; px < p; px++, src += 3) out[dst + px] = table[data[src]!]!;
            }
            // A still image: every frame of the temporal patch is the same picture.
            for (let t = 1; t < frames; t++) {
              out.copyWithin(cBase + t * patchArea, cBase, cBase + patchArea);
            }
          }
          row++;
        }
      }
    }
  }
  return { pixelValues: out, grid: [1, gh, gw] };
}

/**
 * The whole processor on one image: its smart_resize size for the config's pixel limits, a Pillow-exact
 * resize with the config's filter (BICUBIC for Qwen2-VL), then `qwen2VLPixelValues`.
 */
export function qwen2VLResizeAndPatch(image: RgbImageU8, config: Qwen2VLProcessorConfig): Qwen2VLPatches {
  checkImage(image, "qwen2VLResizeAndPatch");
  const size = smartResize(image.height, image.width, {
    factor: config.patchSize * config.mergeSize,
    minPixels: config.minPixels,
    maxPixels: config.maxPixels,
  });
  const resized = resamplePil(image, size.width, size.height, config.resample);
  return qwen2VLPixelValues(resized, config);
}
