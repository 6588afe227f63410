import sharp from "sharp";
import { EditR1Error } from "./errors.js";
import type { RgbImage } from "./types.js";

/**
 * The most pixels `decodeImage` decodes by default: PIL's MAX_IMAGE_PIXELS (89,478,485, about 9459²), the
 * limit the reference pipelines' image loading warns at. Far above any model's input (Qwen-Image-Edit and
 * FLUX-Kontext resize to about 1 megapixel) and far below what would exhaust memory (3 bytes a pixel decoded).
 */
export const MAX_IMAGE_PIXELS = 89_478_485;

/** An image too large to decode; refused from its header, before any pixel is decoded. */
export class ImageTooLargeError extends EditR1Error {
  override readonly name = "ImageTooLargeError";
  constructor(
    readonly width: number,
    readonly height: number,
    readonly maxPixels: number,
  ) {
    super(
      `the image is ${width}×${height} (${((width * height) / 1e6).toFixed(1)} megapixels), more than the ` +
        `${(maxPixels / 1e6).toFixed(1)} megapixels decoded; downscale it first (e.g. to 2048 pixels on the long side)`,
    );
  }
}

export interface DecodeImageOptions {
  /** Refuse images with more pixels than this, from the header (default MAX_IMAGE_PIXELS). */
  maxPixels?: number;
}

/**
 * Decodes any image sharp reads (PNG, JPEG, WebP…) to 8-bit sRGB without alpha. The header is read first: an
 * image of more than `maxPixels` pixels is an ImageTooLargeError before anything is decoded.
 */
export async function decodeImage(
  input: string | Uint8Array,
  options: DecodeImageOptions = {},
): Promise<RgbImage> {
  const maxPixels = options.maxPixels ?? MAX_IMAGE_PIXELS;
  const { width, height } = await sharp(input).metadata();
  if (width !== undefined && height !== undefined && width * height > maxPixels)
    throw new ImageTooLargeError(width, height, maxPixels);
  const { data, info } = await sharp(input, { limitInputPixels: maxPixels })
    .rotate() // honour EXIF orientation, as PIL-based pipelines see the photo
    .toColourspace("srgb")
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return {
    width: info.width,
    height: info.height,
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
  };
}

export async function encodePng(image: RgbImage): Promise<Uint8Array> {
  const buf = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
  return new Uint8Array(buf);
}

/**
 * A grid of images as one PNG: `columns` per row, each cell the size of the largest image (smaller
 * ones top-left aligned), cells separated by `gap` pixels of background.
 */
export async function imageGridPng(
  images: readonly RgbImage[],
  options: { columns?: number; gap?: number; scale?: number; background?: [number, number, number] } = {},
): Promise<Uint8Array> {
  if (images.length === 0) throw new Error("imageGridPng: no images");
  const columns = Math.max(
    1,
    Math.min(options.columns ?? Math.ceil(Math.sqrt(images.length)), images.length),
  );
  const gap = options.gap ?? 2;
  const scale = Math.max(1, Math.floor(options.scale ?? 1));
  const cellW = Math.max(...images.map((i) => i.width)) * scale;
  const cellH = Math.max(...images.map((i) => i.height)) * scale;
  const rows = Math.ceil(images.length / columns);
  const width = columns * cellW + (columns - 1) * gap;
  const height = rows * cellH + (rows - 1) * gap;
  const [r, g, b] = options.background ?? [255, 255, 255];
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < out.length; i += 3) {
    out[i] = r;
    out[i + 1] = g;
    out[i + 2] = b;
  }
  images.forEach((img, n) => {
    const x0 = (n % columns) * (cellW + gap);
    const y0 = Math.floor(n / columns) * (cellH + gap);
    // Nearest-neighbour upscaling keeps tiny images legible.
    for (let y = 0; y < img.height * scale; y++) {
      for (let x = 0; x < img.width * scale; x++) {
        const src = (Math.floor(y / scale) * img.width + Math.floor(x / scale)) * 3;
        const dst = ((y0 + y) * width + x0 + x) * 3;
        out[dst] = img.data[src]!;
        out[dst + 1] = img.data[src + 1]!;
        out[dst + 2] = img.data[src + 2]!;
      }
    }
  });
  return encodePng({ width, height, data: out });
}
