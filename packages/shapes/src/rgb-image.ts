import { ImageMismatchError } from "./errors.js";

/**
 * An 8-bit RGB image, row-major HWC. Structurally identical to @edit-r1/core's `RgbImage`; it is
 * declared here so this package stays dependency-free (core, adapters and judges all sit above it).
 */
export interface RgbImage {
  width: number;
  height: number;
  /** width × height × 3 bytes, row-major, channels last. */
  data: Uint8Array;
}

/** Throws ImageMismatchError when `image` is not a well-formed RgbImage; `what` names it in the message. */
export function assertRgbImage(image: RgbImage, what: string): void {
  const { width, height, data } = image ?? ({} as RgbImage);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new ImageMismatchError(
      `${what}: width and height must be positive integers, got ${width}×${height}; pass an RgbImage.`,
    );
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new ImageMismatchError(
      `${what}: data must be a Uint8Array of width × height × 3 = ${width * height * 3} bytes (RGB, HWC), ` +
        `got ${data instanceof Uint8Array ? `${data.length} bytes` : typeof data}; convert RGBA or planar data first.`,
    );
  }
}
