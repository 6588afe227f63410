import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TinyAdapterError } from "./errors.js";
import { readTinyLora, writeTinyLora } from "./tiny-lora-file.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tiny-lora-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const A = "transformer_blocks.0.attn.to_q.lora_A.weight";
const B = "transformer_blocks.0.attn.to_q.lora_B.weight";

describe("tiny LoRA files", () => {
  it("round-trip with rank, alpha and targets", async () => {
    const params = { [A]: Float32Array.of(1, 2, 3, 4, 5, 6), [B]: Float32Array.of(7, 8, 9, 10) };
    await writeTinyLora(
      join(dir, "a"),
      params,
      { [A]: [2, 3], [B]: [2, 2] },
      {
        rank: 2,
        alpha: 4,
        targets: ["attn.to_q"],
      },
    );
    const read = await readTinyLora(join(dir, "a"));
    expect(read).toEqual({ params, rank: 2, alpha: 4, targets: ["attn.to_q"] });
  });

  it("reads raw PEFT keys without a config as alpha = rank, targets = the modules present", async () => {
    const file = join(dir, "peft.safetensors");
    await writeSafetensors(file, {
      [`base_model.model.${A}`]: { dtype: "float32", shape: [1, 3], data: Float32Array.of(1, 2, 3) },
      [`base_model.model.${B}`]: { dtype: "float32", shape: [3, 1], data: Float32Array.of(4, 5, 6) },
    });
    const read = await readTinyLora(file);
    expect(read.rank).toBe(1);
    expect(read.alpha).toBe(1);
    expect(read.targets).toEqual(["transformer_blocks.0.attn.to_q"]);
    expect(Object.keys(read.params).sort()).toEqual([A, B]);
  });

  it("says what is wrong with a file that is not a LoRA", async () => {
    const file = join(dir, "other.safetensors");
    await writeSafetensors(file, { w: { dtype: "float32", shape: [1], data: Float32Array.of(1) } });
    await expect(readTinyLora(file)).rejects.toThrow(/no lora_A\/lora_B tensors/);
    await expect(readTinyLora(join(dir, "missing"))).rejects.toThrow(TinyAdapterError);
  });
});
