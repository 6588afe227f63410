import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSafetensors, writeSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FluxKontextError } from "./flux-kontext-error.js";
import { type FluxLora, loadFluxLora, saveFluxLora } from "./lora-file.js";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "flux-lora-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const lora = (): FluxLora => ({
  rank: 2,
  alpha: 4,
  modules: ["single_transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_q"],
  factors: new Map([
    [
      "single_transformer_blocks.0.attn.to_k.lora_A.weight",
      { shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
    ],
    [
      "single_transformer_blocks.0.attn.to_k.lora_B.weight",
      { shape: [3, 2], data: Float32Array.of(6, 5, 4, 3, 2, 1) },
    ],
    [
      "transformer_blocks.0.attn.to_q.lora_A.weight",
      { shape: [2, 3], data: Float32Array.of(0.5, 0, 0, 0, 0, 0.5) },
    ],
    [
      "transformer_blocks.0.attn.to_q.lora_B.weight",
      { shape: [3, 2], data: Float32Array.of(1, 1, 1, 1, 1, 1) },
    ],
  ]),
});

describe("PEFT / diffusers LoRA files", () => {
  it("saves in PEFT form (base_model.model. keys, adapter_config.json) and loads it back", async () => {
    const dir = join(tmp, "peft");
    const file = await saveFluxLora(dir, lora());
    expect(file.endsWith("adapter_model.safetensors")).toBe(true);
    const names = (await openSafetensors(file)).names();
    expect(names).toContain("base_model.model.transformer_blocks.0.attn.to_q.lora_A.weight");
    const config = JSON.parse(
      await (await import("node:fs/promises")).readFile(join(dir, "adapter_config.json"), "utf8"),
    );
    expect(config).toMatchObject({ peft_type: "LORA", r: 2, lora_alpha: 4 });
    expect(config.target_modules).toEqual(["attn.to_k", "attn.to_q"]);
    const back = await loadFluxLora(dir);
    expect(back.rank).toBe(2);
    expect(back.alpha).toBe(4);
    expect(back.modules).toEqual(lora().modules);
    for (const [k, t] of lora().factors)
      expect(Array.from(back.factors.get(k)!.data)).toEqual(Array.from(t.data));
  });

  it("reads diffusers' transformer.-prefixed file directly; alpha defaults to the rank without a config", async () => {
    const path = join(tmp, "plain", "pytorch_lora_weights.safetensors");
    await saveFluxLora(join(tmp, "plain"), lora(), { format: "diffusers" });
    expect((await openSafetensors(path)).names()[0]!.startsWith("transformer.")).toBe(true);
    expect((await loadFluxLora(path)).alpha).toBe(4);
    await rm(join(tmp, "plain", "adapter_config.json"));
    const bare = await loadFluxLora(path);
    expect(bare.alpha).toBe(2);
    expect(bare.factors.size).toBe(4);
  });

  it("rejects keys that are not PEFT factors, half modules and rank mismatches", async () => {
    const kohya = join(tmp, "kohya.safetensors");
    await writeSafetensors(kohya, {
      "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": {
        dtype: "float32",
        shape: [1, 2],
        data: new Float32Array(2),
      },
    });
    await expect(loadFluxLora(kohya)).rejects.toThrow(/not PEFT LoRA factors/);
    const half = join(tmp, "half.safetensors");
    await writeSafetensors(half, {
      "transformer_blocks.0.attn.to_q.lora_A.weight": {
        dtype: "float32",
        shape: [1, 2],
        data: new Float32Array(2),
      },
    });
    await expect(loadFluxLora(half)).rejects.toThrow(/only one of lora_A and lora_B/);
    const dir = join(tmp, "badrank");
    await saveFluxLora(dir, lora());
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ r: 8, lora_alpha: 16 }));
    await expect(loadFluxLora(dir)).rejects.toThrow(/r = 8 but the factors have rank 2/);
    await expect(loadFluxLora(join(tmp, "nowhere"))).rejects.toThrow(FluxKontextError);
  });
});
