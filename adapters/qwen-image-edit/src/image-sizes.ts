/**
 * The image sizes of the Qwen-Image-Edit pipelines (diffusers `calculate_dimensions` and the output rule).
 * Every area is a setting: the released pipelines use 1024² for the output and VAE images and 384² for the
 * images the Plus pipeline shows the VLM; Edit-R1 rolls out at 512².
 */

/** Python's `round`: halves go to the even integer. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * diffusers' `calculate_dimensions(target_area, ratio)`: the width·height ≈ `area` at aspect ratio
 * `ratio` = width / height, each side rounded (half to even) to a multiple of 32.
 */
export function calculateDimensions(area: number, ratio: number): { width: number; height: number } {
  const width = Math.sqrt(area * ratio);
  const height = width / ratio;
  return { width: roundHalfEven(width / 32) * 32, height: roundHalfEven(height / 32) * 32 };
}

/** Image areas in pixels (width·height) that the pipeline sizes its images to. */
export interface QwenImageEditAreas {
  /** The default output size: `calculateDimensions(outputArea, ratio)` of the (last) source image. */
  outputArea: number;
  /** Plus: each source as the VAE sees it; v1 gives the VAE the source at the output-default size. */
  vaeImageArea: number;
  /** Plus: each source as the VLM sees it (before the processor's own smart resize). */
  conditionImageArea: number;
}

/** The released pipelines' areas: 1024² output and VAE images, 384² VLM images. */
export const PIPELINE_AREAS: QwenImageEditAreas = {
  outputArea: 1024 * 1024,
  vaeImageArea: 1024 * 1024,
  conditionImageArea: 384 * 384,
};

type Size = { width: number; height: number };

/** Where each source image goes and the output size, for one request. */
export interface QwenImageEditSizes {
  /** The output image (multiples of 2·vaeScale). */
  output: Size;
  /** Each source as the VAE encodes it. */
  vae: Size[];
  /** Each source as it is handed to the VLM's processor. */
  condition: Size[];
}

/**
 * The sizes diffusers' QwenImageEditPipeline ("edit") or QwenImageEditPlusPipeline ("edit-plus") uses for
 * these sources. v1: the one source is resized to `calculateDimensions(outputArea)` for both the VLM and the
 * VAE. Plus: the output comes from the last source; each source goes to the VLM at `conditionImageArea` and to
 * the VAE at `vaeImageArea`, each at its own aspect ratio. A fixed `output` replaces the default output size
 * (still floored to a multiple of 2·vaeScale, as diffusers does with a height/width given).
 */
export function qwenImageEditSizes(
  variant: "edit" | "edit-plus",
  sources: readonly Size[],
  areas: QwenImageEditAreas,
  vaeScale: number,
  output?: Size,
): QwenImageEditSizes {
  const multiple = 2 * vaeScale;
  const ratio = (s: Size) => s.width / s.height;
  const last = sources[sources.length - 1]!;
  const fallback = calculateDimensions(areas.outputArea, ratio(variant === "edit" ? sources[0]! : last));
  const wanted = output ?? fallback;
  const out = {
    width: Math.floor(wanted.width / multiple) * multiple,
    height: Math.floor(wanted.height / multiple) * multiple,
  };
  if (variant === "edit") return { output: out, vae: [fallback], condition: [fallback] };
  return {
    output: out,
    vae: sources.map((s) => calculateDimensions(areas.vaeImageArea, ratio(s))),
    condition: sources.map((s) => calculateDimensions(areas.conditionImageArea, ratio(s))),
  };
}
