/**
 * The images the GEdit judge sees. Two official protocols exist and change the scores (PQ above all):
 * - "area-512" (the current `run_gedit_score.py`): source = `input_image_raw`, edited = the output, each
 *   resized on its own to about 512×512 pixels of area, keeping its aspect ratio;
 * - "match-source" (the older `test_gedit_score.py`): source = `input_image`, edited = the output resized
 *   to exactly the source's width and height.
 * Both then send JPEG at quality 75 (Pillow's default). Resampling is bicubic, as Pillow's resize().
 */
import type { RgbImage } from "@edit-r1/core";
import sharp from "sharp";

export const GEDIT_PREPROCESS = ["area-512", "match-source"] as const;
export type GEditPreprocess = (typeof GEDIT_PREPROCESS)[number];

/** The official area-preserving size: w = ⌊√(512²·r)⌋, h = ⌊w / r⌋ with r = width / height. */
export function area512Size(width: number, height: number): { width: number; height: number } {
  const ratio = width / height;
  const w = Math.floor(Math.sqrt(512 * 512 * ratio));
  return { width: Math.max(1, w), height: Math.max(1, Math.floor(w / ratio)) };
}

/** Bicubic resize to exactly width × height (aspect not kept); the same image when the size matches. */
export async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const { data, info } = await sharp(
    Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength),
    {
      raw: { width: image.width, height: image.height, channels: 3 },
    },
  )
    .resize(width, height, { fit: "fill", kernel: "cubic" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
  };
}

/** JPEG quality 75 as a data URL: what the official GPT judge path sends. */
export async function judgeJpegDataUrl(image: RgbImage): Promise<string> {
  const bytes = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .jpeg({ quality: 75 })
    .toBuffer();
  return `data:image/jpeg;base64,${bytes.toString("base64")}`;
}

/**
 * The (source, edited) pair the judge gets under a protocol. `source` must be `input_image_raw` for
 * "area-512" and `input_image` for "match-source".
 */
export async function preprocessForJudge(
  protocol: GEditPreprocess,
  source: RgbImage,
  edited: RgbImage,
): Promise<{ source: RgbImage; edited: RgbImage }> {
  if (protocol === "match-source") {
    return { source, edited: await resizeRgb(edited, source.width, source.height) };
  }
  const s = area512Size(source.width, source.height);
  const e = area512Size(edited.width, edited.height);
  return {
    source: await resizeRgb(source, s.width, s.height),
    edited: await resizeRgb(edited, e.width, e.height),
  };
}
