import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeAdapterContract } from "@edit-r1/adapter-kit/testing";
import type { RgbImage } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { createFluxKontextAdapter } from "./adapter.js";
import { writeTinyKontextReplica } from "./test-replica.js";

function sourceImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101) % 256;
  return { width, height, data };
}

let tmp: string;

describeAdapterContract({
  // The tiny random replica: 16×16 outputs (an 8×8 latent), 16 T5 tokens, a rank-4 LoRA.
  adapter: createFluxKontextAdapter({
    maxSequenceLength: 16,
    threads: 1,
    lora: { rank: 4, alpha: 8 },
    resolutions: [[16, 16]],
  }),
  setup: async () => {
    tmp = await mkdtemp(join(tmpdir(), "flux-kontext-contract-"));
    const replica = await writeTinyKontextReplica(join(tmp, "pipeline"));
    return {
      options: { model: replica.dir, resolution: [16, 16], steps: 2 },
      // Sources of other sizes than the bucket, so resizing is part of what is checked.
      requests: [
        { key: "a", instruction: "make the cat red", source: sourceImage(20, 11, 1) },
        { key: "b", instruction: "make the cat blue", source: sourceImage(12, 24, 2) },
      ],
    };
  },
  teardown: async () => {
    await closeDefaultRuntime();
    await rm(tmp, { recursive: true, force: true });
  },
});
