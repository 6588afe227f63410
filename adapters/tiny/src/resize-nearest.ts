import type { RgbImage } from "@edit-r1/core";

/**
 * `image` resized to `width`×`height` by nearest neighbour (each output pixel takes the source pixel under its
 * centre): exact for the shapes world's flat colours, where any smoothing filter would invent mixed colours.
 */
export function resizeNearest(image: RgbImage, width: number, height: number): RgbImage {
  if (image.width === width && image.height === height) return image;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(image.height - 1, Math.floor(((y + 0.5) * image.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(image.width - 1, Math.floor(((x + 0.5) * image.width) / width));
      const from = (sy * image.width + sx) * 3;
      data.set(image.data.subarray(from, from + 3), (y * width + x) * 3);
    }
  }
  return { width, height, data };
}
