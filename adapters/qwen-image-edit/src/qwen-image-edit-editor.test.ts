import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RgbImage, requestWithSources } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoadQwenImageEditOptions, loadQwenImageEdit } from "./load.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import { writeQwenImageEditReplica } from "./replica.js";

/**
 * Whole edits on tiny random replicas in the Hub layout (v1 and 2509): the Qwen2.5-VL prompt encoding, sizes,
 * true CFG, several source images, and the settings that must not change results (text padding).
 */

function sourceImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101 + ((i * i) % 17)) % 256;
  return { width, height, data };
}

let tmp: string;
const dirs: Record<"edit" | "edit-plus", string> = { edit: "", "edit-plus": "" };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "qwen-image-edit-editor-"));
  for (const variant of ["edit", "edit-plus"] as const) {
    dirs[variant] = join(tmp, variant);
    await writeQwenImageEditReplica(dirs[variant], { variant, seed: 3 });
  }
});

afterAll(async () => {
  await closeDefaultRuntime();
  await rm(tmp, { recursive: true, force: true });
});

/** Tiny areas: a 32² output, 32² VAE images, 56² VLM images (the processor's minimum), 2 steps. */
const tiny = (variant: "edit" | "edit-plus", o: Partial<LoadQwenImageEditOptions> = {}) =>
  loadQwenImageEdit({
    model: dirs[variant],
    outputArea: 32 * 32,
    vaeImageArea: 32 * 32,
    conditionImageArea: 56 * 56,
    steps: 2,
    threads: 1,
    ...o,
  });

describe("Qwen-Image-Edit editor on tiny replicas", () => {
  it("edits with true CFG: the output size follows the source's aspect ratio, and a seed gives the same bytes", async () => {
    const editor = await tiny("edit");
    try {
      expect(editor.protocol).toMatchObject({
        variant: "edit",
        steps: 2,
        trueCfgScale: 4,
        negativePrompt: " ",
      });
      const request = { key: "k", instruction: "make it red", source: sourceImage(40, 20, 1) };
      const [a] = await editor.edit([request]);
      // calculate_dimensions(32², 2): 45.25 × 22.6 → 32 × 32 (half-to-even multiples of 32).
      expect([a!.width, a!.height]).toEqual([32, 32]);
      const [b] = await editor.edit([request]);
      expect(Buffer.from(b!.data).equals(Buffer.from(a!.data))).toBe(true);
      const [c] = await editor.edit([{ ...request, key: "other" }]);
      expect(Buffer.from(c!.data).equals(Buffer.from(a!.data))).toBe(false);
    } finally {
      await editor.close();
    }
  });

  it("attentionHeadChunk: the transformer computes attention a head at a time, and the image is the same", async () => {
    const softmaxes = (editor: Awaited<ReturnType<typeof tiny>>) => {
      // The velocity graph of one small edit (private: what the edit's sessions compile).
      const built = (
        editor as unknown as {
          transformerGraph(
            shapes: number[][],
            text: number,
            masked: boolean,
          ): { g: { nodes: { op: string }[] } };
        }
      ).transformerGraph(
        [
          [1, 2, 2],
          [1, 2, 2],
        ],
        8,
        false,
      );
      return built.g.nodes.filter((n) => n.op === "Softmax").length;
    };
    const all = await tiny("edit-plus");
    const chunked = await tiny("edit-plus", { attentionHeadChunk: 1 });
    try {
      const heads = all.model.transformer.config.numAttentionHeads;
      expect(heads).toBeGreaterThan(1);
      // One Softmax per attention, or one per head of it.
      expect(softmaxes(chunked)).toBe(softmaxes(all) * heads);
      const request = { key: "k", instruction: "make it red", source: sourceImage(32, 32, 1) };
      const [a] = await all.edit([request]);
      const [b] = await chunked.edit([request]);
      let worst = 0;
      for (let i = 0; i < a!.data.length; i++) worst = Math.max(worst, Math.abs(a!.data[i]! - b!.data[i]!));
      expect(worst).toBeLessThanOrEqual(1);
    } finally {
      await all.close();
      await chunked.close();
    }
  });

  it("pads text rows behind a mask without changing the guided velocity", async () => {
    const request = {
      key: "k",
      instruction: "replace the sky with a sunset",
      source: sourceImage(24, 24, 2),
    };
    const velocityAt = async (textBucket: number) => {
      const editor = await tiny("edit-plus", { textBucket });
      try {
        const prepared = await editor.prepare(request);
        return await prepared.velocity(prepared.noise, prepared.sigmas[0]!, 0);
      } finally {
        await editor.close();
      }
    };
    const exact = await velocityAt(1);
    const padded = await velocityAt(128);
    const err = relativeL2(padded, exact);
    console.log(`text rows padded to 128: relative L2 of the velocity ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-5);
  });

  it("edits with several source images (2509 layout), each VAE-encoded at its own aspect ratio", async () => {
    const editor = await tiny("edit-plus", { trueCfgScale: 1 });
    try {
      const first = sourceImage(24, 24, 3);
      const second = sourceImage(64, 20, 4);
      const sizes = editor.sizesOf([first, second]);
      // The output follows the last image; each source keeps its own aspect ratio.
      expect(sizes.vae).toEqual([
        { width: 32, height: 32 },
        { width: 64, height: 32 },
      ]);
      expect(sizes.output).toEqual({ width: 64, height: 32 });
      const one = { key: "k", instruction: "put the cat on the sofa", source: first };
      const [single] = await editor.edit([one]);
      const [both] = await editor.edit([requestWithSources(one, [first, second])]);
      expect([both!.width, both!.height]).toEqual([64, 32]);
      expect([single!.width, single!.height]).toEqual([32, 32]);
      await expect(editor.edit([requestWithSources(one, [first, first, first, first])])).rejects.toThrow(
        /has 4 source images; Qwen-Image-Edit-2509\/2511 take at most 3/,
      );
    } finally {
      await editor.close();
    }
  });

  it("refuses a second source image for v1, naming the request and what to use", async () => {
    const editor = await tiny("edit");
    try {
      const r = { key: "two", instruction: "x", source: sourceImage(16, 16, 5) };
      await expect(editor.edit([requestWithSources(r, [r.source, r.source])])).rejects.toThrow(
        QwenImageEditError,
      );
      await expect(editor.edit([requestWithSources(r, [r.source, r.source])])).rejects.toThrow(
        /"two" has 2 source images; Qwen-Image-Edit \(v1\) takes one/,
      );
    } finally {
      await editor.close();
    }
  });

  it("refuses a LoRA that does not fit at load, naming the file, the tensor and both shapes", async () => {
    const lora = (module: string, inFeatures: number) => ({
      rank: 1,
      alpha: 1,
      modules: [module],
      factors: new Map([
        [`${module}.lora_A.weight`, { shape: [1, inFeatures], data: new Float32Array(inFeatures) }],
        [`${module}.lora_B.weight`, { shape: [7, 1], data: new Float32Array(7) }],
      ]),
      file: "/loras/other/adapter_model.safetensors",
    });
    await expect(tiny("edit", { lora: lora("transformer_blocks.0.attn.to_q", 7) })).rejects.toThrow(
      /\/loras\/other\/adapter_model\.safetensors: LoRA factor "transformer_blocks\.0\.attn\.to_q\.lora_[AB]\.weight" is \[\d+, \d+\] but the Qwen-Image transformer needs \[\d+, \d+\].*Use a LoRA trained on this model/,
    );
    await expect(tiny("edit", { lora: lora("transformer_blocks.99.attn.to_q", 7) })).rejects.toThrow(
      /the Qwen-Image transformer does not have or cannot adapt, e\.g\. "transformer_blocks\.99\.attn\.to_q"/,
    );
  });

  it("refuses folders that are not a Qwen-Image-Edit pipeline", async () => {
    await expect(loadQwenImageEdit({ model: join(tmp, "nowhere") })).rejects.toThrow(/nowhere/);
    await expect(loadQwenImageEdit({ model: tmp })).rejects.toThrow(/model_index\.json is missing/);
  });
});
