import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AdapterLoadOptions, RgbImage } from "@edit-r1/core";
import { closeDefaultRuntime, openSafetensors, writeSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sourceImage, tinyUniWorld } from "./test-bases.js";
import { BUNDLED_LORA_FOLDER, RELEASED_LORAS, resolveUniWorldLora } from "./uniworld-lora.js";

/**
 * The UniWorld adapter on a replica with its bundled released-form LoRA: every accepted LoRA layout gives the
 * same edit, a LoRA for modules the base lacks is refused by name, loraScale is diffusers' weight, and what
 * each edit used is recorded in the protocol.
 */

let tmp: string;
let model: string;
type Factors = Map<string, { shape: number[]; data: Float32Array }>;
let factors: Factors;
const request = { key: "k", instruction: "make the cat red", source: sourceImage(24, 22, 1) };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "uniworld-"));
  model = join(tmp, "replica");
  await tinyUniWorld.cli.writeReplica!(model, { seed: 4 });
  const file = await openSafetensors(join(model, BUNDLED_LORA_FOLDER, "adapter_model.safetensors"));
  factors = new Map();
  // Module names without the released files' `base_model.model.` prefix.
  for (const name of file.names())
    factors.set(name.slice("base_model.model.".length), {
      shape: [...file.get(name).shape],
      data: await file.readFloat32(name),
    });
});

afterAll(async () => {
  await closeDefaultRuntime();
  await rm(tmp, { recursive: true, force: true });
});

async function edit(
  options: AdapterLoadOptions = {},
): Promise<{ image: RgbImage; protocol: Record<string, unknown> }> {
  const editor = await tinyUniWorld.loadEditor({ model, resolution: [32, 32], steps: 2, ...options });
  try {
    const [image] = await editor.edit([request]);
    return { image: image!, protocol: editor.protocol };
  } finally {
    await editor.close?.();
  }
}

/** Writes the replica's factors under `name(module key)` into `dir`, with an optional adapter_config.json. */
async function writeLayout(
  dir: string,
  file: string,
  key: (k: string) => string,
  extra: Record<string, Float32Array> = {},
  config?: Record<string, unknown>,
  scaleB = 1,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const tensors: Record<string, { dtype: "float32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, t] of factors)
    tensors[key(k)] = {
      dtype: "float32",
      shape: t.shape,
      data: k.endsWith(".lora_B.weight") ? t.data.map((x) => x * scaleB) : t.data,
    };
  for (const [k, v] of Object.entries(extra)) tensors[k] = { dtype: "float32", shape: [], data: v };
  await writeSafetensors(join(dir, file), tensors);
  if (config) await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config));
  return dir;
}

const diff = (a: RgbImage, b: RgbImage) =>
  a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i]!)), 0);

describe("UniWorld adapter", () => {
  it("applies the bundled LoRA at diffusers' weight 1, and records base, LoRA and scale", async () => {
    const bundled = await edit();
    const base = await edit({ loraScale: 0 });
    expect(diff(bundled.image, base.image)).toBeGreaterThan(1);
    expect(bundled.protocol).toMatchObject({
      adapter: "uniworld",
      base: "qwen-image-edit",
      lora: join(model, BUNDLED_LORA_FOLDER),
      loraScale: 1,
      steps: 2,
      trueCfgScale: 4,
      negativePrompt: " ",
    });
  });

  it("gives the same edit from every accepted LoRA layout", async () => {
    const reference = (await edit()).image;
    const rank = [...factors.values()][0]!.shape[0]!;
    const config = { peft_type: "LORA", r: rank, lora_alpha: 2 * rank, target_modules: ["attn.to_q"] };
    const alphas = Object.fromEntries(
      [...factors.keys()]
        .filter((k) => k.endsWith(".lora_A.weight"))
        .map((k) => [k.replace(".lora_A.weight", ".alpha"), Float32Array.of(2 * rank)]),
    );
    const layouts = {
      "transformer. prefix + adapter_config.json": await writeLayout(
        join(tmp, "l1"),
        "adapter_model.safetensors",
        (k) => `transformer.${k}`,
        {},
        config,
      ),
      "bare keys, .alpha tensors, no config": await writeLayout(
        join(tmp, "l2"),
        "adapter_model.safetensors",
        (k) => k,
        alphas,
      ),
      "base_model.model. with .default": await writeLayout(
        join(tmp, "l3"),
        "adapter_model.safetensors",
        (k) => `base_model.model.${k.replace(/\.lora_([AB])\.weight$/, ".lora_$1.default.weight")}`,
        {},
        config,
      ),
      "diffusers pytorch_lora_weights.safetensors, no .weight suffix": await writeLayout(
        join(tmp, "l4"),
        "pytorch_lora_weights.safetensors",
        (k) => `transformer.${k.replace(/\.weight$/, "")}`,
      ),
    };
    for (const [what, dir] of Object.entries(layouts)) {
      const { image } = await edit({ lora: dir });
      expect(diff(image, reference), what).toBe(0);
    }
  });

  it("refuses a LoRA for modules the base does not have, naming one", async () => {
    const dir = await writeLayout(join(tmp, "wrong"), "adapter_model.safetensors", (k) =>
      k.replace(/^transformer_blocks\.0\./, "transformer_blocks.77."),
    );
    await expect(edit({ lora: dir })).rejects.toThrow(/transformer_blocks\.77\.attn\./);
  });

  it("reads --lora-scale as diffusers' weight: 2 equals a file with 2·B", async () => {
    const doubled = await writeLayout(
      join(tmp, "double"),
      "adapter_model.safetensors",
      (k) => k,
      {},
      undefined,
      2,
    );
    const scaled = await edit({ loraScale: 2 });
    expect(scaled.protocol.loraScale).toBe(2);
    expect(diff(scaled.image, (await edit({ lora: doubled })).image)).toBeLessThanOrEqual(1);
    expect(diff(scaled.image, (await edit()).image)).toBeGreaterThan(1);
  });

  it("says how to get the released LoRA when it is neither given, bundled nor cached", async () => {
    const empty = join(tmp, "empty-cache");
    await mkdir(empty);
    await expect(resolveUniWorldLora("flux-kontext", tmp, undefined, { cacheDir: empty })).rejects.toThrow(
      /chestnutlzj\/Edit-R1-FLUX\.1-Kontext-dev is not in the Hugging Face cache.*edit-r1 download --adapter uniworld --base flux-kontext/,
    );
  });

  it("downloads the base model and the released LoRA, per base", () => {
    const repos = (base?: string) =>
      tinyUniWorld.cli.downloads!(base === undefined ? {} : { base }).map((d) => d.repo);
    expect(repos()).toEqual(["Qwen/Qwen-Image-Edit-2509", RELEASED_LORAS["qwen-image-edit"]]);
    expect(repos("flux-kontext")).toEqual([
      "black-forest-labs/FLUX.1-Kontext-dev",
      RELEASED_LORAS["flux-kontext"],
    ]);
    expect(() => repos("sd3")).toThrow(/--base sd3/);
  });

  it("bundles the LoRA in the released form: PEFT keys in float32, r and lora_alpha = 2r", async () => {
    const dir = join(model, BUNDLED_LORA_FOLDER);
    const config = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 8 });
    const file = await openSafetensors(join(dir, "adapter_model.safetensors"));
    expect(file.names().every((n) => n.startsWith("base_model.model.transformer_blocks."))).toBe(true);
    expect(new Set(file.names().map((n) => file.get(n).dtype))).toEqual(new Set(["float32"]));
  });
});
