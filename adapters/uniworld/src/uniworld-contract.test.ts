import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeAdapterContract } from "@edit-r1/adapter-kit/testing";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { sourceImage, tinyUniWorld } from "./test-bases.js";

let tmp: string;
const adapter = tinyUniWorld;

describeAdapterContract({
  // The UniWorld replica: a tiny Qwen-Image-Edit-2509 with a random LoRA in the released form bundled inside.
  adapter,
  setup: async () => {
    tmp = await mkdtemp(join(tmpdir(), "uniworld-contract-"));
    const dir = join(tmp, "replica");
    await adapter.cli.writeReplica!(dir, { seed: 2 });
    return {
      options: { model: dir, resolution: [32, 32], steps: 2 },
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
