/**
 * RgbImage ⇄ base64 data URLs, the only way images travel in OpenAI-compatible chat requests when the
 * judge cannot reach our file system. sharp does the resizing, encoding and decoding.
 */
import { createHash } from "node:crypto";
import type { RgbImage } from "@edit-r1/core";
import { EditR1Error } from "@edit-r1/core";
import sharp from "sharp";
import { JudgeConfigError } from "./errors.js";

export type ImageFormat = "jpeg" | "png" | "webp";

export interface ImageEncoding {
  /** Default "jpeg", what Edit-R1's reward client sends. */
  format?: ImageFormat;
  /** JPEG/WebP quality, 1–100. Default 95. */
  quality?: number;
  /** Longer side is shrunk to this many pixels (aspect kept, never enlarged). Default 1024. */
  maxSide?: number;
}

/** The encoding settings with defaults applied; part of the judge cache key because they change what the judge sees. */
export function resolveImageEncoding(options: ImageEncoding = {}): Required<ImageEncoding> {
  const format = options.format ?? "jpeg";
  const quality = options.quality ?? 95;
  const maxSide = options.maxSide ?? 1024;
  if (!["jpeg", "png", "webp"].includes(format)) {
    throw new JudgeConfigError(`image format "${format}" is not supported; use jpeg, png or webp`);
  }
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new JudgeConfigError(`image quality ${quality} is invalid; use an integer from 1 to 100`);
  }
  if (!Number.isInteger(maxSide) || maxSide < 1) {
    throw new JudgeConfigError(`image maxSide ${maxSide} is invalid; use a positive integer`);
  }
  return { format, quality, maxSide };
}

function checkImage(image: RgbImage, what: string): void {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new JudgeConfigError(
      `${what} has invalid size ${width}×${height}; width and height must be positive integers`,
    );
  }
  if (data.length !== width * height * 3) {
    throw new JudgeConfigError(
      `${what} has ${data.length} bytes but ${width}×${height} RGB needs ${width * height * 3}; pass 8-bit RGB, row-major, channels last`,
    );
  }
}

/** Encodes an RGB image as a `data:image/…;base64,…` URL, shrinking it to `maxSide` first. */
export async function encodeImageDataUrl(
  image: RgbImage,
  options: ImageEncoding = {},
  what = "image",
): Promise<string> {
  const { format, quality, maxSide } = resolveImageEncoding(options);
  checkImage(image, what);
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (image.width > maxSide || image.height > maxSide) {
    pipeline = pipeline.resize({ width: maxSide, height: maxSide, fit: "inside", withoutEnlargement: true });
  }
  const bytes =
    format === "jpeg"
      ? await pipeline.jpeg({ quality }).toBuffer()
      : format === "webp"
        ? await pipeline.webp({ quality }).toBuffer()
        : await pipeline.png().toBuffer();
  return `data:image/${format};base64,${bytes.toString("base64")}`;
}

/** Thrown by decodeImageDataUrl; the judge server turns it into a 400. */
export class ImageDecodeError extends EditR1Error {
  override readonly name = "ImageDecodeError";
}

const DATA_URL = /^data:image\/([a-z0-9.+-]+);base64,/i;

/**
 * Decodes a base64 image data URL into 8-bit RGB (alpha dropped, grey expanded). Only data URLs are
 * accepted: a judge server that fetched http(s) URLs would reach the network on a client's behalf.
 */
export async function decodeImageDataUrl(
  url: string,
  options: { maxPixels?: number } = {},
): Promise<RgbImage> {
  const m = DATA_URL.exec(url);
  if (!m) {
    const head = url.slice(0, 40);
    throw new ImageDecodeError(
      `image_url "${head}${url.length > 40 ? "…" : ""}" is not a base64 image data URL; send data:image/<type>;base64,<bytes>`,
    );
  }
  const bytes = Buffer.from(url.slice(m[0].length), "base64");
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: options.maxPixels ?? 4096 * 4096 })
      .toColourspace("srgb")
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return {
      width: info.width,
      height: info.height,
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    };
  } catch (err) {
    throw new ImageDecodeError(
      `image/${m[1]} data URL (${bytes.length} bytes) could not be decoded: ${(err as Error).message}; send a valid PNG, JPEG or WebP within the pixel limit`,
    );
  }
}

/** SHA-256 of an image's size and pixels, hex; the judge cache keys on it. */
export function hashImage(image: RgbImage): string {
  const h = createHash("sha256");
  h.update(`${image.width}x${image.height}:`);
  h.update(image.data);
  return h.digest("hex");
}
