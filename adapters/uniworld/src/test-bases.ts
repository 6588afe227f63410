import { createQwenImageEditAdapter } from "@edit-r1/adapter-qwen-image-edit";
import type { RgbImage } from "@edit-r1/core";
import { createUniWorldAdapter } from "./adapter.js";

/**
 * For tests: UniWorld over Qwen-Image-Edit with the tiny replica's areas (32² outputs and VAE images, 56² VLM
 * images, the processor's minimum), a rank-4 training LoRA and enough text rows for the replica's long
 * byte-level system prompt.
 */
export const tinyUniWorld = createUniWorldAdapter({
  bases: {
    "qwen-image-edit": createQwenImageEditAdapter({
      threads: 1,
      lora: { rank: 4, alpha: 8 },
      areas: { outputArea: 32 * 32, vaeImageArea: 32 * 32, conditionImageArea: 56 * 56 },
      maxTextTokens: 512,
    }),
  },
});

/** A deterministic RGB test image. */
export function sourceImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101) % 256;
  return { width, height, data };
}
