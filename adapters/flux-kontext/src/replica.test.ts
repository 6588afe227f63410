import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { checkpointShapes, keyPatterns, readKeyList, type WeightShapes } from "@edit-r1/adapter-kit";
import { flowScheduleConfigFromDiffusers, type RgbImage } from "@edit-r1/core";
import { closeDefaultRuntime, openSafetensors } from "@edit-r1/engine";
import {
  clipPoolingPositions,
  parseAutoencoderKLConfig,
  parseClipTextConfig,
  parseFluxTransformerConfig,
  parseT5EncoderConfig,
} from "@edit-r1/models";
import { repositoryRoot } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adapter } from "./adapter.js";
import { loadFluxKontext } from "./flux-kontext-editor.js";
import { openFluxKontextModel } from "./flux-kontext-model.js";
import {
  autoencoderKLWeightShapes,
  clipTextWeightShapes,
  fluxTransformerWeightShapes,
  t5EncoderWeightShapes,
  writeFluxKontextReplica,
} from "./replica.js";

type Json = Record<string, unknown>;

const TEST_DATA = join(import.meta.dirname, "..", "test-data");
const FIXTURES = join(repositoryRoot(), "fixtures");

const sorted = (m: WeightShapes) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));
const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Json;

function filesUnder(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(root, join(dir, e.name)) : [relative(root, join(dir, e.name))],
  );
}

/** The config and weights of a fixture saved by transformers (fixtures/<name>). */
async function fixture(name: string): Promise<{ config: Json; shapes: WeightShapes }> {
  const meta = (await readJson(join(FIXTURES, name, "meta.json"))) as { config: Json };
  return { config: meta.config, shapes: await checkpointShapes(join(FIXTURES, name, "weights.safetensors")) };
}

/** The released VAE config of the key list, with the block types diffusers fills in. */
const withBlockTypes = (config: Json): Json => {
  const n = (config.block_out_channels as number[]).length;
  return {
    ...config,
    down_block_types: Array(n).fill("DownEncoderBlock2D"),
    up_block_types: Array(n).fill("UpDecoderBlock2D"),
  };
};

const roots: string[] = [];
async function replica(options: Parameters<typeof writeFluxKontextReplica>[1] = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "flux-kontext-replica-"));
  roots.push(dir);
  await writeFluxKontextReplica(dir, options);
  return dir;
}

afterAll(async () => {
  await closeDefaultRuntime();
  await Promise.all(roots.map((r) => rm(r, { recursive: true, force: true })));
});

describe("the weight keys match the released checkpoints", () => {
  it("the transformer builder's keys and shapes at the released config are exactly FLUX.1-Kontext-dev's", async () => {
    const ref = await readKeyList(join(TEST_DATA, "flux_kontext_dev_transformer.txt"));
    const derived = fluxTransformerWeightShapes(parseFluxTransformerConfig(ref.config));
    expect(derived.size).toBe(1160);
    expect(sorted(derived)).toEqual(sorted(ref.shapes));
  });

  it("the VAE builders' keys at the released config are exactly FLUX's AutoencoderKL (no quant convs)", async () => {
    const ref = await readKeyList(join(TEST_DATA, "flux_vae.txt"));
    const derived = autoencoderKLWeightShapes(parseAutoencoderKLConfig(withBlockTypes(ref.config)));
    expect(derived.size).toBe(244);
    expect(sorted(derived)).toEqual(sorted(ref.shapes));
    expect([...derived.keys()].some((k) => k.includes("quant_conv"))).toBe(false);
  });

  it("the CLIP and T5 key lists of a config are what transformers saved for the reference fixtures", async () => {
    const clip = await fixture("clip-text-model");
    expect(sorted(clipTextWeightShapes(parseClipTextConfig(clip.config)))).toEqual(sorted(clip.shapes));
    // T5: "shared.weight" holds the token embedding; the tied encoder.embed_tokens is not stored.
    const t5 = await fixture("t5-encoder");
    expect(sorted(t5EncoderWeightShapes(parseT5EncoderConfig(t5.config)))).toEqual(sorted(t5.shapes));
  });
});

describe("writeFluxKontextReplica", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await replica();
  });

  it("writes every file of the Hub's diffusers layout, small", () => {
    const files = filesUnder(dir).sort();
    expect(files).toEqual(
      [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder_2/config.json",
        "text_encoder_2/model-00001-of-00002.safetensors",
        "text_encoder_2/model-00002-of-00002.safetensors",
        "text_encoder_2/model.safetensors.index.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "tokenizer_2/special_tokens_map.json",
        "tokenizer_2/tokenizer.json",
        "tokenizer_2/tokenizer_config.json",
        "transformer/config.json",
        "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
        "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
        "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
      ].sort(),
    );
    const total = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    expect(total).toBeLessThan(2 * 1024 * 1024);
  });

  it("names FluxKontextPipeline and the released components in model_index.json", async () => {
    expect(await readJson(join(dir, "model_index.json"))).toMatchObject({
      _class_name: "FluxKontextPipeline",
      scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
      text_encoder: ["transformers", "CLIPTextModel"],
      text_encoder_2: ["transformers", "T5EncoderModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
      tokenizer_2: ["transformers", "T5TokenizerFast"],
      transformer: ["diffusers", "FluxTransformer2DModel"],
      vae: ["diffusers", "AutoencoderKL"],
    });
  });

  it("has configs of the released kinds whose sizes fit together", async () => {
    const tfJson = await readJson(join(dir, "transformer", "config.json"));
    const vaeJson = await readJson(join(dir, "vae", "config.json"));
    expect(tfJson).toMatchObject({
      _class_name: "FluxTransformer2DModel",
      guidance_embeds: true,
      patch_size: 1,
    });
    expect(vaeJson).toMatchObject({
      _class_name: "AutoencoderKL",
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
      use_quant_conv: false,
      use_post_quant_conv: false,
      latent_channels: 16,
    });
    const tf = parseFluxTransformerConfig(tfJson);
    const vae = parseAutoencoderKLConfig(vaeJson);
    const clip = parseClipTextConfig(await readJson(join(dir, "text_encoder", "config.json")));
    const t5 = parseT5EncoderConfig(await readJson(join(dir, "text_encoder_2", "config.json")));
    // The transformer reads T5's hidden states and CLIP's pooled output; its tokens are 2×2 VAE latent patches.
    expect(tf.jointAttentionDim).toBe(t5.dModel);
    expect(tf.pooledProjectionDim).toBe(clip.hiddenSize);
    expect(tf.inChannels).toBe(vae.latentChannels * 4);
    expect(tf.axesDimsRope.reduce((a, b) => a + b)).toBe(tf.attentionHeadDim);
    expect(vae.blockOutChannels).toHaveLength(4);
    expect(clip.eosTokenId).toBe(2);
  });

  it("indexes map every key to a shard that holds it, and the files hold exactly the keys the configs need", async () => {
    const tf = parseFluxTransformerConfig(await readJson(join(dir, "transformer", "config.json")));
    const t5 = parseT5EncoderConfig(await readJson(join(dir, "text_encoder_2", "config.json")));
    const checks: [string, WeightShapes, number][] = [
      ["transformer/diffusion_pytorch_model.safetensors.index.json", fluxTransformerWeightShapes(tf), 3],
      ["text_encoder_2/model.safetensors.index.json", t5EncoderWeightShapes(t5), 2],
    ];
    for (const [indexFile, expected, shardCount] of checks) {
      const index = (await readJson(join(dir, indexFile))) as {
        metadata: { total_size: number };
        weight_map: Record<string, string>;
      };
      expect(Object.keys(index.weight_map).sort()).toEqual([...expected.keys()].sort());
      const shards = new Set(Object.values(index.weight_map));
      expect(shards.size, indexFile).toBe(shardCount);
      let bytes = 0;
      for (const shard of shards) {
        const file = await openSafetensors(join(dir, indexFile, "..", shard));
        const inShard = Object.entries(index.weight_map).filter(([, s]) => s === shard);
        expect(file.names().sort()).toEqual(inShard.map(([k]) => k).sort());
        for (const n of file.names()) {
          expect(file.tensors.get(n)!.dtype, n).toBe("bfloat16");
          bytes += file.tensors.get(n)!.length;
        }
      }
      expect(index.metadata.total_size).toBe(bytes);
      expect(sorted(await checkpointShapes(join(dir, indexFile)))).toEqual(sorted(expected));
    }
    const vae = parseAutoencoderKLConfig(await readJson(join(dir, "vae", "config.json")));
    const vaeFile = join(dir, "vae", "diffusion_pytorch_model.safetensors");
    expect(sorted(await checkpointShapes(vaeFile))).toEqual(sorted(autoencoderKLWeightShapes(vae)));
    const clip = parseClipTextConfig(await readJson(join(dir, "text_encoder", "config.json")));
    const clipFile = join(dir, "text_encoder", "model.safetensors");
    expect(sorted(await checkpointShapes(clipFile))).toEqual(sorted(clipTextWeightShapes(clip)));
  });

  it("has the released key names, modulo block counts", async () => {
    const names = async (path: string) => keyPatterns((await checkpointShapes(join(dir, path))).keys());
    const reference = async (file: string) =>
      keyPatterns((await readKeyList(join(TEST_DATA, file))).shapes.keys());
    expect(await names("transformer/diffusion_pytorch_model.safetensors.index.json")).toEqual(
      await reference("flux_kontext_dev_transformer.txt"),
    );
    expect(await names("vae/diffusion_pytorch_model.safetensors")).toEqual(await reference("flux_vae.txt"));
    expect(await names("text_encoder/model.safetensors")).toEqual(
      keyPatterns((await fixture("clip-text-model")).shapes.keys()),
    );
    expect(await names("text_encoder_2/model.safetensors.index.json")).toEqual(
      keyPatterns((await fixture("t5-encoder")).shapes.keys()),
    );
  });

  it("writes FLUX.1-Kontext-dev's scheduler config", async () => {
    const json = await readJson(join(dir, "scheduler", "scheduler_config.json"));
    expect(json._class_name).toBe("FlowMatchEulerDiscreteScheduler");
    expect(flowScheduleConfigFromDiffusers(json)).toMatchObject({
      numTrainTimesteps: 1000,
      shift: 3,
      useDynamicShifting: true,
      baseShift: 0.5,
      maxShift: 1.15,
      baseImageSeqLen: 256,
      maxImageSeqLen: 4096,
      timeShiftType: "exponential",
    });
  });

  it("opens with the adapter's loader; the tokenizers give ids inside the encoders' vocabularies", async () => {
    const model = await openFluxKontextModel(dir);
    expect(model.transformerLayout).toBe("diffusers");
    expect(model.transformer.config.guidanceEmbeds).toBe(true);
    expect(model.vae.config).toMatchObject({
      scalingFactor: 0.3611,
      shiftFactor: 0.1159,
      useQuantConv: false,
    });
    const text = "make the cat red";
    const clip = model.clip.tokenizer.encode(text, { maxLength: 77 });
    const clipIds = [...clip.ids];
    expect(clipIds.every((id) => id >= 0 && id < model.clip.config.vocabSize)).toBe(true);
    // CLIP pools at EOS: with eos_token_id 2 that is the argmax id, so EOS must be the highest id.
    const eos = model.clip.tokenizer.tokenizer.token_to_id("<|endoftext|>")!;
    expect(Math.max(...clipIds)).toBe(eos);
    expect(Number(clipPoolingPositions([clip.ids], model.clip.config)[0])).toBe(clip.length - 1);
    expect(model.clip.tokenizer.padId).toBe(eos);
    const t5 = model.t5.tokenizer.encode(text, { maxLength: 16 });
    const t5Ids = [...t5.ids.subarray(0, t5.length)];
    expect(t5Ids.every((id) => id > 2 || id === 1)).toBe(true);
    expect(t5Ids.at(-1)).toBe(1);
    expect(Math.max(...t5.ids)).toBeLessThan(model.t5.config.vocabSize);
    expect(model.t5.tokenizer.padId).toBe(0);
  });

  it("edits a small image through loadFluxKontext: the declared size, finite and varied, deterministic", async () => {
    const source: RgbImage = { width: 40, height: 30, data: new Uint8Array(40 * 30 * 3) };
    for (let i = 0; i < source.data.length; i++) source.data[i] = (i * 37 + 11) % 256;
    const edit = async (model: string, instruction: string) => {
      const editor = await loadFluxKontext({
        model,
        steps: 2,
        resolutions: [[32, 32]],
        maxSequenceLength: 16,
        threads: 1,
      });
      try {
        return (await editor.edit([{ key: "k", instruction, source }]))[0]!;
      } finally {
        await editor.close();
      }
    };
    const out = await edit(dir, "make the cat red");
    expect([out.width, out.height]).toEqual([32, 32]);
    expect(new Set(out.data).size).toBeGreaterThan(20);
    const again = await edit(dir, "make the cat red");
    expect(Buffer.compare(again.data, out.data)).toBe(0);
    const other = await edit(dir, "make the cat blue");
    expect(Buffer.compare(other.data, out.data)).not.toBe(0);
  });

  it("is deterministic in the seed: the same seed writes the same bytes, another seed other weights", async () => {
    const same = await replica();
    const other = await replica({ seed: 1 });
    for (const f of filesUnder(dir)) {
      const a = readFileSync(join(dir, f));
      expect(readFileSync(join(same, f)).equals(a), f).toBe(true);
      expect(readFileSync(join(other, f)).equals(a), f).toBe(!f.endsWith(".safetensors"));
    }
  });

  it("is the adapter's `cli.writeReplica`, and refuses a bad seed or dtype", async () => {
    const viaAdapter = await mkdtemp(join(tmpdir(), "flux-kontext-replica-"));
    roots.push(viaAdapter);
    await adapter.cli.writeReplica!(viaAdapter, { seed: 0 });
    expect(filesUnder(viaAdapter).sort()).toEqual(filesUnder(dir).sort());
    for (const f of filesUnder(dir))
      expect(readFileSync(join(viaAdapter, f)).equals(readFileSync(join(dir, f))), f).toBe(true);
    await expect(writeFluxKontextReplica(join(viaAdapter, "x"), { seed: -1 })).rejects.toThrow(/seed/);
    await expect(
      writeFluxKontextReplica(join(viaAdapter, "y"), { dtype: "float16" as "float32" }),
    ).rejects.toThrow(/dtype/);
  });

  it("writes float32 weights when asked, the bf16 values widened", async () => {
    const f32 = await replica({ dtype: "float32" });
    const key = "transformer_blocks.0.attn.to_q.weight";
    const index = join("transformer", "diffusion_pytorch_model.safetensors.index.json");
    const a = await openSafetensors(join(dir, index));
    const b = await openSafetensors(join(f32, index));
    expect(b.tensors.get(key)!.dtype).toBe("float32");
    const bf = await a.readFloat32(key);
    const full = await b.readFloat32(key);
    expect(Math.max(...full.map((x, i) => Math.abs(x - bf[i]!)))).toBeLessThan(0.01);
    expect((await readJson(join(f32, "text_encoder_2", "config.json"))).torch_dtype).toBe("float32");
  });
});
