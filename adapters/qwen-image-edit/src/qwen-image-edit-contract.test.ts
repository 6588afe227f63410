import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeAdapterContract } from "@edit-r1/adapter-kit/testing";
import type { RgbImage } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { createQwenImageEditAdapter } from "./adapter.js";
import { writeQwenImageEditReplica } from "./replica.js";

function sourceImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101) % 256;
  return { width, height, data };
}

let tmp: string;

describeAdapterContract({
  // The tiny random 2509-layout replica: 32×32 outputs (a 4×4 latent), sources VAE-encoded at 32² area and shown
  // to the VLM at 56² (its processor's minimum), a rank-4 LoRA, text rows enough for the replica's long
  // byte-level system prompt.
  adapter: createQwenImageEditAdapter({
    threads: 1,
    lora: { rank: 4, alpha: 8 },
    areas: { outputArea: 32 * 32, vaeImageArea: 32 * 32, conditionImageArea: 56 * 56 },
    maxTextTokens: 512,
  }),
  setup: async () => {
    tmp = await mkdtemp(join(tmpdir(), "qwen-image-edit-contract-"));
    const dir = join(tmp, "pipeline");
    await writeQwenImageEditReplica(dir, { variant: "edit-plus", seed: 1 });
    return {
      options: { model: dir, resolution: [32, 32], steps: 2 },
      // Square-ish sources of other sizes than the bucket, so resizing is part of what is checked.
      requests: [
        { key: "a", instruction: "make the cat red", source: sourceImage(20, 19, 1) },
        { key: "b", instruction: "make the cat blue", source: sourceImage(24, 26, 2) },
      ],
    };
  },
  teardown: async () => {
    await closeDefaultRuntime();
    await rm(tmp, { recursive: true, force: true });
  },
});
