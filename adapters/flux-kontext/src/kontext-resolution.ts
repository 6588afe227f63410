import { FluxKontextError } from "./flux-kontext-error.js";

/** A (width, height) pair in pixels. */
export type Resolution = readonly [width: number, height: number];

/**
 * The resolutions FLUX.1-Kontext was trained at, (width, height), about one megapixel each (diffusers'
 * `PREFERRED_KONTEXT_RESOLUTIONS`, the same list as BFL's).
 */
export const PREFERRED_KONTEXT_RESOLUTIONS: readonly Resolution[] = [
  [672, 1568],
  [688, 1504],
  [720, 1456],
  [752, 1392],
  [800, 1328],
  [832, 1248],
  [880, 1184],
  [944, 1104],
  [1024, 1024],
  [1104, 944],
  [1184, 880],
  [1248, 832],
  [1328, 800],
  [1392, 752],
  [1456, 720],
  [1504, 688],
  [1568, 672],
];

/**
 * The size an input image is resized to, as diffusers' Kontext pipeline picks it: the preferred resolution
 * whose aspect ratio is closest to the image's (its size first floored to a multiple of `multipleOf`; the
 * first entry wins a tie), floored to a multiple of `multipleOf` (16 = VAE factor 8 × 2×2 packing).
 */
export function kontextInputSize(
  width: number,
  height: number,
  options: { resolutions?: readonly Resolution[]; multipleOf?: number } = {},
): { width: number; height: number } {
  const list = options.resolutions ?? PREFERRED_KONTEXT_RESOLUTIONS;
  const multiple = options.multipleOf ?? 16;
  const floor = (v: number) => Math.floor(v / multiple) * multiple;
  const w0 = floor(width);
  const h0 = floor(height);
  if (w0 <= 0 || h0 <= 0) {
    throw new FluxKontextError(
      `the input image is ${width}×${height}; it must be at least ${multiple}×${multiple} pixels`,
    );
  }
  if (list.length === 0) throw new FluxKontextError("the list of resolutions is empty");
  const aspect = w0 / h0;
  let best = list[0]!;
  for (const r of list) {
    if (Math.abs(aspect - r[0] / r[1]) < Math.abs(aspect - best[0] / best[1])) best = r;
  }
  const out = { width: floor(best[0]), height: floor(best[1]) };
  if (out.width <= 0 || out.height <= 0) {
    throw new FluxKontextError(`resolution ${best[0]}×${best[1]} is smaller than a multiple of ${multiple}`);
  }
  return out;
}
