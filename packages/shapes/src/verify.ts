import { ImageMismatchError, InvalidOptionsError } from "./errors.js";
import { assertRgbImage, type RgbImage } from "./rgb-image.js";

export interface VerifyOptions {
  /**
   * Largest per-channel difference that still counts as a full match (default 32). Matching falls
   * linearly to zero at twice this, so small noise costs nothing and near misses earn partial
   * credit. Palette colours differ by at least 80 in some channel, so with tolerance ≤ 40 a pixel
   * left in its old colour never earns credit for a new one.
   */
  tolerance?: number;
}

export interface VerifyResult {
  /** edit × preserve, in [0, 1]. */
  score: number;
  /** Mean match on the pixels the edit must change (target ≠ source); 1 when there are none. */
  edit: number;
  /** Mean match on the pixels the edit must keep (target = source); 1 when there are none. */
  preserve: number;
  changedPixels: number;
  keptPixels: number;
}

export const DEFAULT_VERIFY_TOLERANCE = 32;

/**
 * Measures how well `edited` realises the exact `target` of an edit of `source`.
 *
 * The pixels split in two sets: those the edit must change (target differs from source) and those
 * it must keep. Each set is scored by its mean per-pixel match to the target, so a small shape
 * recolouring counts as much as a whole background change, and the score is their product: an
 * image left unchanged scores 0 (nothing it should do is done), a perfect edit scores 1, and an
 * edit that also spoils a tenth of what should stay loses a tenth. The result rises monotonically
 * as more pixels come to match the target.
 */
export function verifyDetails(
  edited: RgbImage,
  target: RgbImage,
  source: RgbImage,
  options: VerifyOptions = {},
): VerifyResult {
  const tol = options.tolerance ?? DEFAULT_VERIFY_TOLERANCE;
  if (!(Number.isFinite(tol) && tol > 0 && tol < 128)) {
    throw new InvalidOptionsError(`verify: tolerance must be in (0, 128), got ${tol}.`);
  }
  assertRgbImage(edited, "edited image");
  assertRgbImage(target, "target image");
  assertRgbImage(source, "source image");
  for (const [img, what] of [
    [edited, "edited"],
    [source, "source"],
  ] as const) {
    if (img.width !== target.width || img.height !== target.height) {
      throw new ImageMismatchError(
        `verify: the ${what} image is ${img.width}×${img.height} but the target is ${target.width}×${target.height}; ` +
          "resize it to the target's size (nearest neighbour keeps flat colours) before verifying.",
      );
    }
  }
  const e = edited.data;
  const t = target.data;
  const s = source.data;
  let changed = 0;
  let kept = 0;
  let changedMatch = 0;
  let keptMatch = 0;
  for (let i = 0; i < t.length; i += 3) {
    const d = Math.max(
      Math.abs(e[i]! - t[i]!),
      Math.abs(e[i + 1]! - t[i + 1]!),
      Math.abs(e[i + 2]! - t[i + 2]!),
    );
    const match = d <= tol ? 1 : d >= 2 * tol ? 0 : (2 * tol - d) / tol;
    if (t[i] !== s[i] || t[i + 1] !== s[i + 1] || t[i + 2] !== s[i + 2]) {
      changed++;
      changedMatch += match;
    } else {
      kept++;
      keptMatch += match;
    }
  }
  const edit = changed === 0 ? 1 : changedMatch / changed;
  const preserve = kept === 0 ? 1 : keptMatch / kept;
  return { score: edit * preserve, edit, preserve, changedPixels: changed, keptPixels: kept };
}

/** The verifier's score in [0, 1]; see verifyDetails. */
export function verify(
  edited: RgbImage,
  target: RgbImage,
  source: RgbImage,
  options?: VerifyOptions,
): number {
  return verifyDetails(edited, target, source, options).score;
}
