import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { checkpointShapes, keyPatterns as patterns, readKeyList } from "@edit-r1/adapter-kit";
import { flowScheduleConfigFromDiffusers } from "@edit-r1/core";
import { closeDefaultRuntime, compile, Graph, openSafetensors } from "@edit-r1/engine";
import {
  buildAutoencoderKLQwenImageDecoder,
  buildQwenImageTransformer,
  loadTextTokenizer,
  openSafetensorsWeights,
  parseAutoencoderKLQwenImageConfig,
  parseQwen2VLProcessorConfig,
  parseQwen25VLConfig,
  parseQwenImageTransformerConfig,
  qwenImageTransformerInputs,
} from "@edit-r1/models";
import { repositoryRoot } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openQwenImageEditModel } from "./qwen-image-edit-model.js";
import {
  qwen25VLWeightShapes,
  qwenImageTransformerWeightShapes,
  qwenImageVaeWeightShapes,
  type WeightShapes,
  writeQwenImageEditReplica,
} from "./replica.js";

type Json = Record<string, unknown>;

const TEST_DATA = join(import.meta.dirname, "..", "test-data");

/** A key list from reference/keys/, copied into test-data/. */
const referenceKeys = (file: string) => readKeyList(join(TEST_DATA, file));

const sorted = (m: WeightShapes) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

function filesUnder(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(root, join(dir, e.name)) : [relative(root, join(dir, e.name))],
  );
}

const readJson = async (path: string) => JSON.parse(await readFile(path, "utf8")) as Json;

const roots: string[] = [];
async function replica(options: Parameters<typeof writeQwenImageEditReplica>[1] = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "qwen-replica-"));
  roots.push(dir);
  await writeQwenImageEditReplica(dir, options);
  return dir;
}

afterAll(async () => {
  await closeDefaultRuntime();
  await Promise.all(roots.map((r) => rm(r, { recursive: true, force: true })));
});

describe("the weight keys match the released checkpoints", () => {
  it("the transformer builder's keys and shapes at the released config are exactly Qwen-Image-Edit's", async () => {
    const ref = await referenceKeys("qwen_image_edit_transformer.txt");
    const derived = qwenImageTransformerWeightShapes(parseQwenImageTransformerConfig(ref.config));
    expect(derived.size).toBe(1933);
    expect(sorted(derived)).toEqual(sorted(ref.shapes));
  });

  it("the VAE builders' keys (plus the temporal convs) at the released config are exactly the Qwen-Image VAE's", async () => {
    const ref = await referenceKeys("qwen_image_vae.txt");
    const derived = qwenImageVaeWeightShapes(parseAutoencoderKLQwenImageConfig(ref.config));
    expect(derived.size).toBe(194);
    expect(sorted(derived)).toEqual(sorted(ref.shapes));
  });

  it("the Qwen2.5-VL key list of a config is the legacy layout of the repository's reference encoder", async () => {
    const dir = join(repositoryRoot(), "fixtures", "qwen2_5_vl-encoder");
    const meta = JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")) as { config: Json };
    const stored = await checkpointShapes(join(dir, "weights.safetensors"));
    expect(sorted(qwen25VLWeightShapes(meta.config))).toEqual(sorted(stored));
  });
});

describe("writeQwenImageEditReplica", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await replica();
  });

  it("writes every file of the Hub layout, small", () => {
    const files = filesUnder(dir).sort();
    const tokenizerFiles = [
      "added_tokens.json",
      "chat_template.jinja",
      "merges.txt",
      "special_tokens_map.json",
      "tokenizer_config.json",
      "vocab.json",
    ];
    expect(files).toEqual(
      [
        "model_index.json",
        ...[
          ...tokenizerFiles,
          "preprocessor_config.json",
          "tokenizer.json",
          "video_preprocessor_config.json",
        ].map((f) => `processor/${f}`),
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/generation_config.json",
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model-00002-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json",
        ...tokenizerFiles.map((f) => `tokenizer/${f}`),
        "transformer/config.json",
        "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
      ].sort(),
    );
    const total = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    expect(total).toBeLessThan(5 * 1024 * 1024);
  });

  it("names the pipeline class of each variant in model_index.json, with the real components", async () => {
    const index = await readJson(join(dir, "model_index.json"));
    expect(index).toMatchObject({
      _class_name: "QwenImageEditPipeline",
      processor: ["transformers", "Qwen2VLProcessor"],
      scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
      text_encoder: ["transformers", "Qwen2_5_VLForConditionalGeneration"],
      tokenizer: ["transformers", "Qwen2Tokenizer"],
      transformer: ["diffusers", "QwenImageTransformer2DModel"],
      vae: ["diffusers", "AutoencoderKLQwenImage"],
    });
    const plus = await replica({ variant: "edit-plus" });
    expect((await readJson(join(plus, "model_index.json")))._class_name).toBe("QwenImageEditPlusPipeline");
  });

  it("indexes map every key to a shard that holds it, and the shards hold exactly the keys the configs need", async () => {
    const tfConfigJson = await readJson(join(dir, "transformer", "config.json"));
    const textConfig = await readJson(join(dir, "text_encoder", "config.json"));
    const vaeConfig = parseAutoencoderKLQwenImageConfig(await readJson(join(dir, "vae", "config.json")));
    const tfConfig = parseQwenImageTransformerConfig(tfConfigJson);
    const checks: [string, WeightShapes][] = [
      [
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        qwenImageTransformerWeightShapes(tfConfig),
      ],
      ["text_encoder/model.safetensors.index.json", qwen25VLWeightShapes(textConfig)],
    ];
    for (const [indexFile, expected] of checks) {
      const index = (await readJson(join(dir, indexFile))) as {
        metadata: { total_size: number };
        weight_map: Record<string, string>;
      };
      const folder = join(dir, indexFile, "..");
      expect(Object.keys(index.weight_map).sort()).toEqual([...expected.keys()].sort());
      let bytes = 0;
      const shards = new Set(Object.values(index.weight_map));
      expect(shards.size, indexFile).toBe(2);
      for (const shard of shards) {
        const file = await openSafetensors(join(folder, shard));
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
    const vae = await checkpointShapes(join(dir, "vae", "diffusion_pytorch_model.safetensors"));
    expect(sorted(vae)).toEqual(sorted(qwenImageVaeWeightShapes(vaeConfig)));
    // The transformer reads the text encoder's hidden states; its output unpacks into the VAE's latents.
    expect(tfConfig.jointAttentionDim).toBe(textConfig.hidden_size);
    expect(tfConfig.outChannels).toBe(vaeConfig.zDim);
    expect(tfConfig.inChannels).toBe(vaeConfig.zDim * tfConfig.patchSize ** 2);
    expect(tfConfig.axesDimsRope.reduce((a, b) => a + b)).toBe(tfConfig.attentionHeadDim);
    expect(vaeConfig.latentsMean).toHaveLength(vaeConfig.zDim);
  });

  it("has the released key names, modulo block counts", async () => {
    const tf = await checkpointShapes(
      join(dir, "transformer", "diffusion_pytorch_model.safetensors.index.json"),
    );
    expect(patterns(tf.keys())).toEqual(
      patterns((await referenceKeys("qwen_image_edit_transformer.txt")).shapes.keys()),
    );
    const vae = await checkpointShapes(join(dir, "vae", "diffusion_pytorch_model.safetensors"));
    expect(patterns(vae.keys())).toEqual(patterns((await referenceKeys("qwen_image_vae.txt")).shapes.keys()));
    const text = await checkpointShapes(join(dir, "text_encoder", "model.safetensors.index.json"));
    const fixture = join(repositoryRoot(), "fixtures", "qwen2_5_vl-encoder", "weights.safetensors");
    expect(patterns(text.keys())).toEqual(patterns((await checkpointShapes(fixture)).keys()));
  });

  it("opens with the adapter's loader, every config parsed and the vision sizes agreeing with the processor", async () => {
    for (const variant of ["edit", "edit-plus"] as const) {
      const model = await openQwenImageEditModel(variant === "edit" ? dir : await replica({ variant }));
      expect(model.variant).toBe(variant);
      expect(model.transformer.config.numLayers).toBe(2);
      expect(model.vae.config.zDim).toBe(16);
      expect(model.textEncoder?.config.hiddenSize).toBe(model.transformer.config.jointAttentionDim);
    }
    const text = parseQwen25VLConfig(await readJson(join(dir, "text_encoder", "config.json")));
    const processor = parseQwen2VLProcessorConfig(
      await readJson(join(dir, "processor", "preprocessor_config.json")),
    );
    expect(processor).toMatchObject({
      patchSize: text.vision.patchSize,
      mergeSize: text.vision.spatialMergeSize,
      temporalPatchSize: text.vision.temporalPatchSize,
      minPixels: 3136,
      maxPixels: 12845056,
    });
    const video = await readJson(join(dir, "processor", "video_preprocessor_config.json"));
    expect(video).toMatchObject({
      patch_size: text.vision.patchSize,
      merge_size: text.vision.spatialMergeSize,
    });
  });

  it("writes the released scheduler config", async () => {
    const json = await readJson(join(dir, "scheduler", "scheduler_config.json"));
    expect(flowScheduleConfigFromDiffusers(json)).toEqual({
      numTrainTimesteps: 1000,
      shift: 1,
      useDynamicShifting: true,
      baseShift: 0.5,
      maxShift: 0.9,
      baseImageSeqLen: 256,
      maxImageSeqLen: 8192,
      timeShiftType: "exponential",
      shiftTerminal: 0.02,
    });
  });

  it("ships a tokenizer that encodes the edit template's special tokens to the ids in the text encoder config", async () => {
    const config = await readJson(join(dir, "text_encoder", "config.json"));
    const tokenizer = await loadTextTokenizer(join(dir, "processor"));
    const text =
      "<|im_start|>system\nDescribe the image.<|im_end|>\n<|im_start|>user\n" +
      "<|vision_start|><|image_pad|><|vision_end|>make the sky red<|im_end|>\n<|im_start|>assistant\n";
    const { ids, length } = tokenizer.encode(text, { maxLength: 128 });
    const used = [...ids.subarray(0, length)];
    const idOf = (t: string) => tokenizer.tokenizer.token_to_id(t);
    const vocabSize = config.vocab_size as number;
    expect(used.every((id) => id >= 0 && id < vocabSize)).toBe(true);
    expect(idOf("<|image_pad|>")).toBe(config.image_token_id);
    expect(idOf("<|video_pad|>")).toBe(config.video_token_id);
    expect(idOf("<|vision_start|>")).toBe(config.vision_start_token_id);
    expect(idOf("<|vision_end|>")).toBe(config.vision_end_token_id);
    expect(idOf("<|im_end|>")).toBe(config.eos_token_id);
    expect(tokenizer.padId).toBe(idOf("<|endoftext|>"));
    const visionStart = used.indexOf(config.vision_start_token_id as number);
    expect(used.slice(visionStart, visionStart + 3)).toEqual([
      config.vision_start_token_id,
      config.image_token_id,
      config.vision_end_token_id,
    ]);
    expect(used[0]).toBe(idOf("<|im_start|>"));
    expect(used.filter((id) => id === idOf("<|im_start|>"))).toHaveLength(3);
    // Merged words are single tokens, other text falls back to bytes, and decoding gives the text back.
    expect(used).toContain(idOf("Ġsky"));
    expect(used).toContain(idOf("Ġred"));
    expect(used.some((id) => id < 256)).toBe(true);
    expect(tokenizer.tokenizer.decode(used, { skip_special_tokens: false })).toBe(text);
    // tokenizer/ holds the same vocabulary for the slow tokenizer (no tokenizer.json, as released).
    const fast = (await readJson(join(dir, "processor", "tokenizer.json"))).model as Json;
    expect(await readJson(join(dir, "tokenizer", "vocab.json"))).toEqual(fast.vocab);
    const merges = (await readFile(join(dir, "tokenizer", "merges.txt"), "utf8")).trim().split("\n").slice(1);
    expect(merges).toEqual(fast.merges);
  });

  it("runs: the transformer and the VAE decoder load the weights through the model loaders and give finite, varied outputs", async () => {
    const tfConfig = parseQwenImageTransformerConfig(await readJson(join(dir, "transformer", "config.json")));
    const tfWeights = await openSafetensorsWeights(
      join(dir, "transformer", "diffusion_pytorch_model.safetensors.index.json"),
    );
    const vaeConfig = parseAutoencoderKLQwenImageConfig(await readJson(join(dir, "vae", "config.json")));
    const vaeWeights = await openSafetensorsWeights(join(dir, "vae", "diffusion_pytorch_model.safetensors"));
    const g = new Graph("replica");
    const inputs = qwenImageTransformerInputs(g, tfConfig, {
      batch: 1,
      imgShapes: [
        [1, 2, 2],
        [1, 2, 2],
      ],
      textTokens: 3,
    });
    const velocity = buildQwenImageTransformer(g, tfConfig, tfWeights, inputs).sample;
    const latent = g.input("latent", "float32", [1, vaeConfig.zDim, 1, 2, 2]);
    const image = buildAutoencoderKLQwenImageDecoder(g, vaeConfig, vaeWeights, latent);
    const session = await compile(g, { outputs: { velocity, image } });
    const ramp = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(f * i + 1));
    try {
      const out = await session.run({
        hidden_states: ramp(8 * 64, 0.37),
        encoder_hidden_states: ramp(3 * 64, 0.11),
        timestep: Float32Array.of(0.5),
        latent: ramp(vaeConfig.zDim * 4, 0.23),
      });
      for (const [name, values] of Object.entries(out)) {
        const v = values as Float32Array;
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
        expect(v.every(Number.isFinite), name).toBe(true);
        expect(std, name).toBeGreaterThan(1e-3);
      }
    } finally {
      await session.dispose();
    }
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
    expect((await readJson(join(f32, "text_encoder", "config.json"))).torch_dtype).toBe("float32");
    await expect(writeQwenImageEditReplica(join(f32, "x"), { seed: -1 })).rejects.toThrow(/seed/);
  });
});
