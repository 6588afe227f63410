import { cp, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LoraFile, writeLora } from "@edit-r1/adapter-kit";
import { decodeImage, type EditRequest, type RgbImage } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { HubError } from "@edit-r1/hub";
import { TokenizerError, WeightError } from "@edit-r1/models";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { editImage, type LoadFluxKontextOptions, loadFluxKontext } from "./flux-kontext-editor.js";
import { FluxKontextError } from "./flux-kontext-error.js";
import { type TinyReplica, writeBflTransformer, writeTinyKontextReplica } from "./test-replica.js";

let tmp: string;
let replica: TinyReplica;
let bflDir: string;

// Small resolutions for the tiny model (VAE factor 2, so sides are multiples of 4).
const TINY: Partial<LoadFluxKontextOptions> = {
  resolutions: [
    [16, 16],
    [24, 12],
    [12, 24],
  ],
  steps: 2,
  maxSequenceLength: 16,
  threads: 1,
};

function sourceImage(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) % 256;
  return { width, height, data };
}

const request = (over: Partial<EditRequest> = {}): EditRequest => ({
  key: "r1",
  instruction: "make the cat red",
  source: sourceImage(20, 11),
  ...over,
});

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "flux-kontext-"));
  replica = await writeTinyKontextReplica(join(tmp, "diffusers"));
  // The same pipeline with its transformer as a BFL single file at the root; transformer/ keeps only config.json.
  bflDir = join(tmp, "bfl");
  await cp(replica.dir, bflDir, { recursive: true });
  await unlink(join(bflDir, "transformer", "diffusion_pytorch_model.safetensors"));
  await writeBflTransformer(join(bflDir, "flux1-kontext-dev.safetensors"), replica);
});

afterAll(async () => {
  await closeDefaultRuntime();
  await rm(tmp, { recursive: true, force: true });
});

async function editWith(options: Partial<LoadFluxKontextOptions>, requests = [request()]) {
  const editor = await loadFluxKontext({ model: replica.dir, ...TINY, ...options });
  try {
    return { images: await editor.edit(requests), editor };
  } finally {
    await editor.close();
  }
}

const same = (a: RgbImage, b: RgbImage) => a.width === b.width && Buffer.compare(a.data, b.data) === 0;

describe("FLUX.1-Kontext editor on a tiny random replica", () => {
  let base: RgbImage;

  it("edits end to end: the output has the chosen Kontext resolution of the input", async () => {
    const { images, editor } = await editWith({});
    base = images[0]!;
    // 20×11 has aspect 1.82, closest to 24×12 (2.0) of the list.
    expect([base.width, base.height]).toEqual([24, 12]);
    expect(base.data.length).toBe(24 * 12 * 3);
    expect(new Set(base.data).size).toBeGreaterThan(10);
    expect(editor.protocol).toMatchObject({
      steps: 2,
      guidance: 3.5,
      sampler: "euler",
      transformerLayout: "diffusers",
    });
  });

  it("attentionHeadChunk: the transformer computes attention a head at a time, and the image is the same", async () => {
    const softmaxes = (editor: Awaited<ReturnType<typeof loadFluxKontext>>) => {
      // The velocity graph of one small edit (private: what the edit's sessions compile).
      const built = (
        editor as unknown as {
          transformerGraph(t: number, a: number, b: number): { g: { nodes: { op: string }[] } };
        }
      ).transformerGraph(16, 16, 16);
      return built.g.nodes.filter((n) => n.op === "Softmax").length;
    };
    const all = await loadFluxKontext({ model: replica.dir, ...TINY });
    const chunked = await loadFluxKontext({ model: replica.dir, ...TINY, attentionHeadChunk: 1 });
    try {
      const heads = replica.transformerConfig.num_attention_heads as number;
      expect(heads).toBeGreaterThan(1);
      // One Softmax per attention, or one per head of it.
      expect(softmaxes(chunked)).toBe(softmaxes(all) * heads);
      const [a, b] = [await all.edit([request()]), await chunked.edit([request()])];
      let worst = 0;
      for (let i = 0; i < a[0]!.data.length; i++)
        worst = Math.max(worst, Math.abs(a[0]!.data[i]! - b[0]!.data[i]!));
      expect(worst).toBeLessThanOrEqual(1);
    } finally {
      await all.close();
      await chunked.close();
    }
  });

  it("is deterministic per request key and seed, and the instruction and guidance matter", async () => {
    const { images } = await editWith({}, [
      request(),
      request({ key: "r2" }),
      request({ instruction: "make the cat blue" }),
    ]);
    expect(same(images[0]!, base)).toBe(true);
    expect(same(images[1]!, base)).toBe(false);
    expect(same(images[2]!, base)).toBe(false);
    const g = await editWith({ guidance: 2.5 });
    expect(same(g.images[0]!, base)).toBe(false);
  });

  it("honours a fixed output size", async () => {
    const { images } = await editWith({ outputSize: { width: 8, height: 16 } });
    expect([images[0]!.width, images[0]!.height]).toEqual([8, 16]);
  });

  it("gives identical outputs from the BFL single-file transformer", async () => {
    // Found without being named: transformer/ has no weights, so the root-level BFL file is used.
    const editor = await loadFluxKontext({ model: bflDir, ...TINY });
    try {
      expect(editor.protocol.transformerLayout).toBe("bfl");
      const [out] = await editor.edit([request()]);
      expect(same(out!, base)).toBe(true);
    } finally {
      await editor.close();
    }
  });

  it("applies a PEFT LoRA with its scale; scale 0 is the base model", async () => {
    const factors = new Map<string, { shape: number[]; data: Float32Array }>();
    const modules = ["transformer_blocks.0.attn.to_q", "single_transformer_blocks.1.attn.to_v"];
    let seed = 1;
    const rand = (n: number) =>
      Float32Array.from({ length: n }, () => ((seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5) * 0.5);
    for (const m of modules) {
      factors.set(`${m}.lora_A.weight`, { shape: [2, 32], data: rand(64) });
      factors.set(`${m}.lora_B.weight`, { shape: [32, 2], data: rand(64) });
    }
    const lora: LoraFile = { rank: 2, alpha: 4, modules, factors };
    const dir = join(tmp, "lora");
    await writeLora(dir, lora, { baseModel: "test" });
    const withLora = (await editWith({ lora: dir })).images[0]!;
    expect(same(withLora, base)).toBe(false);
    const half = (await editWith({ lora: dir, loraScale: 0.5 })).images[0]!;
    expect(same(half, withLora)).toBe(false);
    // alpha 4 at scale 0.5 is alpha 2 at scale 1.
    const alpha2 = (await editWith({ lora: { ...lora, alpha: 2 } })).images[0]!;
    expect(same(half, alpha2)).toBe(true);
    const off = (await editWith({ lora: dir, loraScale: 0 })).images[0]!;
    expect(same(off, base)).toBe(true);
  });

  it("rejects a LoRA for modules this transformer does not have", async () => {
    const lora: LoraFile = {
      rank: 1,
      alpha: 1,
      modules: ["transformer_blocks.7.attn.to_q"],
      factors: new Map([
        ["transformer_blocks.7.attn.to_q.lora_A.weight", { shape: [1, 32], data: new Float32Array(32) }],
        ["transformer_blocks.7.attn.to_q.lora_B.weight", { shape: [32, 1], data: new Float32Array(32) }],
      ]),
    };
    await expect(loadFluxKontext({ model: replica.dir, ...TINY, lora })).rejects.toThrow(
      /does not have or cannot adapt, e.g. "transformer_blocks.7.attn.to_q"/,
    );
  });

  it("rejects a LoRA of another model size at load, naming the tensor and both shapes (not the runtime's feed error)", async () => {
    const lora: LoraFile = {
      rank: 1,
      alpha: 1,
      modules: ["transformer_blocks.0.attn.to_q"],
      factors: new Map([
        ["transformer_blocks.0.attn.to_q.lora_A.weight", { shape: [1, 16], data: new Float32Array(16) }],
        ["transformer_blocks.0.attn.to_q.lora_B.weight", { shape: [32, 1], data: new Float32Array(32) }],
      ]),
      file: "/loras/small/adapter_model.safetensors",
    };
    const err = await loadFluxKontext({ model: replica.dir, ...TINY, lora }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /\/loras\/small\/adapter_model\.safetensors: LoRA factor "transformer_blocks\.0\.attn\.to_q\.lora_A\.weight" is \[1, 16\] but the FLUX transformer needs \[1, 32\]/,
    );
    expect((err as Error).message).toMatch(/Use a LoRA trained on this model/);
    expect((err as Error).message).not.toMatch(/feed/);
  });

  it("editImage decodes, edits and writes a PNG", async () => {
    const input = join(tmp, "in.png");
    const src = request().source;
    await writeFile(
      input,
      await sharp(Buffer.from(src.data), { raw: { width: 20, height: 11, channels: 3 } })
        .png()
        .toBuffer(),
    );
    const out = join(tmp, "out.png");
    const edited = await editImage({
      model: replica.dir,
      ...TINY,
      image: input,
      instruction: "make the cat red",
      out,
    });
    const written = await decodeImage(await readFile(out));
    expect([written.width, written.height]).toEqual([24, 12]);
    expect(Buffer.compare(written.data, edited.data)).toBe(0);
  });
});

describe("FLUX.1-Kontext editor errors", () => {
  it("says which T5 shard is missing", async () => {
    const dir = join(tmp, "missing-shard");
    await cp(replica.dir, dir, { recursive: true });
    await unlink(join(dir, "text_encoder_2", "model-00002-of-00002.safetensors"));
    const err = await loadFluxKontext({ model: dir, ...TINY }).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(String(err.message)).toMatch(
      /1 of 2 weight shards .* missing: text_encoder_2\/model-00002-of-00002.safetensors/,
    );
  });

  it("fails at load when the transformer config does not match its weights", async () => {
    const dir = join(tmp, "mismatch");
    await cp(replica.dir, dir, { recursive: true });
    await writeFile(
      join(dir, "transformer", "config.json"),
      JSON.stringify({ ...replica.transformerConfig, joint_attention_dim: 48 }),
    );
    const err = await loadFluxKontext({ model: dir, ...TINY }).catch((e) => e);
    expect(err).toBeInstanceOf(WeightError);
    expect(String(err.message)).toMatch(
      /context_embedder.weight" has shape \[32, 32\] but the model config needs \[32, 48\]/,
    );
  });

  it("refuses an undecodable image, naming it", async () => {
    const bad = join(tmp, "not-an-image.png");
    await writeFile(bad, "definitely not a PNG");
    await expect(editImage({ model: replica.dir, ...TINY, image: bad, instruction: "x" })).rejects.toThrow(
      /cannot decode the source image .*not-an-image.png/,
    );
    await expect(editImage({ model: replica.dir, ...TINY, image: bad, instruction: "x" })).rejects.toThrow(
      FluxKontextError,
    );
  });

  it("refuses an instruction longer than the T5 limit unless truncation is allowed", async () => {
    const long = Array.from({ length: 20 }, () => "red").join(" ");
    const editor = await loadFluxKontext({ model: replica.dir, ...TINY });
    try {
      await expect(editor.edit([request({ instruction: long })])).rejects.toThrow(TokenizerError);
      await expect(editor.edit([request({ instruction: long })])).rejects.toThrow(
        /21 tokens long, more than this encoder's limit of 16/,
      );
    } finally {
      await editor.close();
    }
    const { images } = await editWith({ truncateInstructions: true }, [request({ instruction: long })]);
    expect(images[0]!.width).toBe(24);
  });

  it("names a folder that is not a FLUX pipeline and a repo that is not cached", async () => {
    const dir = join(tmp, "other");
    await cp(replica.dir, dir, { recursive: true });
    await writeFile(join(dir, "model_index.json"), JSON.stringify({ _class_name: "QwenImageEditPipeline" }));
    await expect(loadFluxKontext({ model: dir })).rejects.toThrow(
      /names a QwenImageEditPipeline, not a FLUX/,
    );
    await expect(
      loadFluxKontext({ model: "black-forest-labs/FLUX.1-Kontext-dev", cacheDir: join(tmp, "empty-cache") }),
    ).rejects.toThrow(/not in the Hub cache/);
  });

  it("rejects a source image whose bytes do not match its size", async () => {
    const editor = await loadFluxKontext({ model: replica.dir, ...TINY });
    try {
      await expect(
        editor.edit([request({ source: { width: 20, height: 11, data: new Uint8Array(10) } })]),
      ).rejects.toThrow(/claims 20×11 RGB but has 10 bytes/);
    } finally {
      await editor.close();
    }
  });
});
