import type { RgbImage } from "@edit-r1/core";
import { resamplePil } from "@edit-r1/models";
import { AdapterKitError } from "./errors.js";

/**
 * Source images on their way into a diffusers pipeline and edited images on their way out, as diffusers'
 * VaeImageProcessor does it, shared by every adapter.
 */

/** Checks that an RgbImage's bytes match its size; `what` names the image in the error. */
export function checkRgbImage(image: RgbImage, what = "the source image"): void {
  if (
    !Number.isInteger(image.width) ||
    !Number.isInteger(image.height) ||
    image.width < 1 ||
    image.height < 1
  ) {
    throw new AdapterKitError(
      `${what} has size ${image.width}×${image.height}; both sides must be positive integers`,
    );
  }
  if (image.data.length !== image.width * image.height * 3) {
    throw new AdapterKitError(
      `${what} claims ${image.width}×${image.height} RGB but has ${image.data.length} bytes ` +
        `(expected ${image.width * image.height * 3}); decode it with decodeImage`,
    );
  }
}

/**
 * `VaeImageProcessor.resize` on a PIL image: Pillow's LANCZOS, bit for bit (the same size is a copy). Every
 * diffusers edit pipeline resizes its sources this way before the VAE sees them.
 */
export function resizeLikeDiffusers(image: RgbImage, width: number, height: number): RgbImage {
  checkRgbImage(image);
  if (image.width === width && image.height === height) return image;
  return resamplePil(image, width, height, "lanczos");
}

/** `VaeImageProcessor.preprocess` after the resize: HWC bytes → CHW floats in [−1, 1] (x/255·2 − 1, in fp32). */
export function imageToTensor(image: RgbImage): Float32Array {
  const n = image.width * image.height;
  const out = new Float32Array(3 * n);
  const f = Math.fround;
  for (let i = 0; i < n; i++)
    for (let c = 0; c < 3; c++) out[c * n + i] = f(f(f(image.data[i * 3 + c]! / 255) * 2) - 1);
  return out;
}

/** CHW floats in [0, 1] → HWC bytes, rounded as diffusers' numpy_to_pil does ((x·255).round()). */
export function tensorToImage(x: Float32Array, width: number, height: number): RgbImage {
  const n = width * height;
  if (x.length !== 3 * n)
    throw new AdapterKitError(`tensorToImage: ${x.length} values are not a 3×${height}×${width} image`);
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.round(x[c * n + i]! * 255);
  return { width, height, data };
}
