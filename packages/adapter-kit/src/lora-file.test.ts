import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSafetensors, writeSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterKitError } from "./errors.js";
import { checkLoraCoverage } from "./lora-coverage.js";
import { type LoraFile, readLora, writeLora } from "./lora-file.js";
import { initLoraParameters, loraFileOf, loraParameters } from "./lora-params.js";
import {
  DEMO_SHAPES,
  GOOD_CONFIG,
  goodTensors,
  writeBadLoraCorpus,
  writeLoraFolder,
} from "./test-bad-loras.js";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kit-lora-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const QA = "transformer_blocks.0.attn.to_q.lora_A.weight";
const QB = "transformer_blocks.0.attn.to_q.lora_B.weight";
const KA = "single_transformer_blocks.0.attn.to_k.lora_A.weight";
const KB = "single_transformer_blocks.0.attn.to_k.lora_B.weight";
const SHAPES = { [KA]: [2, 3], [KB]: [3, 2], [QA]: [2, 3], [QB]: [3, 2] };

const lora = (): LoraFile => ({
  rank: 2,
  alpha: 4,
  modules: ["single_transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_q"],
  factors: new Map([
    [KA, { shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) }],
    [KB, { shape: [3, 2], data: Float32Array.of(6, 5, 4, 3, 2, 1) }],
    [QA, { shape: [2, 3], data: Float32Array.of(0.5, 0, 0, 0, 0, 0.5) }],
    [QB, { shape: [3, 2], data: Float32Array.of(1, 1, 1, 1, 1, 1) }],
  ]),
});

const asArrays = (l: LoraFile) =>
  Object.fromEntries([...l.factors].map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.data) }]));

/** Writes `lora()`'s factors under other key spellings into a fresh file. */
async function writeLayout(name: string, key: (bare: string) => string, extra: Record<string, number> = {}) {
  const tensors: Record<string, { dtype: "float32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, t] of lora().factors) tensors[key(k)] = { dtype: "float32", shape: t.shape, data: t.data };
  for (const [k, v] of Object.entries(extra))
    tensors[k] = { dtype: "float32", shape: [], data: Float32Array.of(v) };
  const file = join(tmp, `${name}.safetensors`);
  await writeSafetensors(file, tensors);
  return file;
}

describe("LoRA files (one writer, one reader)", () => {
  it("writes the released form (transformer. keys, float32, adapter_config.json) and reads it back", async () => {
    const dir = join(tmp, "written");
    await mkdir(dir);
    await writeLora(dir, lora(), { baseModel: "org/base" });
    const names = (await openSafetensors(join(dir, "adapter_model.safetensors"))).names();
    expect(names).toEqual([...lora().factors.keys()].sort().map((k) => `transformer.${k}`));
    const config = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({
      peft_type: "LORA",
      r: 2,
      lora_alpha: 4,
      base_model_name_or_path: "org/base",
    });
    expect(config.target_modules).toEqual(["attn.to_k", "attn.to_q"]);
    const back = await readLora(dir);
    expect(back.rank).toBe(2);
    expect(back.alpha).toBe(4);
    expect(back.modules).toEqual(lora().modules);
    expect(asArrays(back)).toEqual(asArrays(lora()));
  });

  it("reads every key layout the files appear with to the same factors", async () => {
    const layouts: [string, (k: string) => string][] = [
      ["peft", (k) => `base_model.model.${k}`],
      ["diffusers", (k) => `transformer.${k}`],
      ["bare", (k) => k],
      ["no-weight-suffix", (k) => `transformer.${k.replace(/\.weight$/, "")}`],
      ["peft-default", (k) => `base_model.model.${k.replace(/\.weight$/, ".default.weight")}`],
    ];
    for (const [name, key] of layouts) {
      const read = await readLora(await writeLayout(name, key));
      expect(asArrays(read), name).toEqual(asArrays(lora()));
      // No config and no .alpha tensors: alpha = rank (diffusers' rule, scale 1.0).
      expect(read.alpha, name).toBe(2);
    }
  });

  it("takes alpha from .alpha tensors, from adapter_config.json, or from the caller's default", async () => {
    const withAlpha = await writeLayout("alpha", (k) => `transformer.${k}`, {
      "transformer.transformer_blocks.0.attn.to_q.alpha": 8,
      "transformer.single_transformer_blocks.0.attn.to_k.alpha": 8,
    });
    expect((await readLora(withAlpha)).alpha).toBe(8);
    const bare = await writeLayout("no-alpha", (k) => k);
    expect((await readLora(bare, { alpha: 64 })).alpha).toBe(64);
    const dir = join(tmp, "folder");
    await mkdir(dir);
    await writeLora(dir, lora(), { baseModel: "x" });
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ r: 2, lora_alpha: 3 }));
    expect((await readLora(dir)).alpha).toBe(3);
  });

  it("rejects what is not a usable LoRA, naming the file and what to do", async () => {
    const kohya = join(tmp, "kohya.safetensors");
    await writeSafetensors(kohya, {
      "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": {
        dtype: "float32",
        shape: [1, 2],
        data: new Float32Array(2),
      },
    });
    await expect(readLora(kohya)).rejects.toThrow(/kohya\.safetensors.*not PEFT LoRA factors/);
    const half = join(tmp, "half.safetensors");
    await writeSafetensors(half, { [QA]: { dtype: "float32", shape: [1, 2], data: new Float32Array(2) } });
    await expect(readLora(half)).rejects.toThrow(/only one of lora_A and lora_B/);
    const dir = join(tmp, "badrank");
    await mkdir(dir);
    await writeLora(dir, lora(), { baseModel: "x" });
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ r: 8, lora_alpha: 16 }));
    await expect(readLora(dir)).rejects.toThrow(/r = 8 but the factors have rank 2/);
    await writeFile(join(dir, "adapter_config.json"), "{not json");
    await expect(readLora(dir)).rejects.toThrow(/adapter_config\.json is not valid JSON/);
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ r: 2, lora_alpha: "abc" }));
    await expect(readLora(dir)).rejects.toThrow(/lora_alpha must be a positive number, got "abc"/);
    await expect(readLora(join(tmp, "nowhere"))).rejects.toThrow(AdapterKitError);
    await mkdir(join(tmp, "empty"));
    await expect(readLora(join(tmp, "empty"))).rejects.toThrow(/has none of adapter_model\.safetensors/);
  });
});

describe("LoRA parameters", () => {
  it("checks a file against the model's factors, naming the module, and scales B", async () => {
    const params = loraParameters(lora(), SHAPES, "x.safetensors", 2);
    expect(Array.from(params[QA]!)).toEqual([0.5, 0, 0, 0, 0, 0.5]);
    expect(Array.from(params[QB]!)).toEqual([2, 2, 2, 2, 2, 2]);
    const { [KA]: _a, [KB]: _b, ...onlyQ } = SHAPES;
    expect(() => loraParameters(lora(), onlyQ, "x.safetensors")).toThrow(
      /x\.safetensors: 2 LoRA factor\(s\) target modules this model does not have.*single_transformer_blocks\.0\.attn\.to_k/,
    );
    expect(() => loraParameters(lora(), { ...SHAPES, [QA]: [2, 4] }, "x")).toThrow(
      /"transformer_blocks\.0\.attn\.to_q\.lora_A\.weight" is \[2, 3\] but this model needs \[2, 4\]/,
    );
  });

  it("initialises like PEFT (B = 0, A ~ N(0, 1/r²)) from the seed, and round-trips through a file", () => {
    const a = initLoraParameters(SHAPES, 2, 5, "demo/lora-init");
    expect(Array.from(a[QB]!)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(a[QA]!.some((v) => v !== 0)).toBe(true);
    expect(initLoraParameters(SHAPES, 2, 5, "demo/lora-init")).toEqual(a);
    expect(initLoraParameters(SHAPES, 2, 6, "demo/lora-init")[QA]).not.toEqual(a[QA]);
    const file = loraFileOf(a, SHAPES, { rank: 2, alpha: 4, targets: ["attn.to_q"] }, "export");
    expect(loraParameters(file, SHAPES, "export")).toEqual(a);
    expect(() => loraFileOf({}, SHAPES, { rank: 2, alpha: 4, targets: [] }, "export")).toThrow(
      /needs 6 values/,
    );
  });
});

// The corpus of bad LoRA folders (test data written by test-bad-loras.ts), one test per case.
const corpusDir = await mkdtemp(join(tmpdir(), "kit-bad-loras-"));
const corpus = await writeBadLoraCorpus(corpusDir);
afterAll(async () => {
  await rm(corpusDir, { recursive: true, force: true });
});

describe("the bad-LoRA corpus: each folder is refused naming the file, the problem and the fix", () => {
  it.each(Object.entries(corpus).filter(([, c]) => c.stage === "read"))("%s", async (_name, bad) => {
    const err = await readLora(bad.path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterKitError);
    expect((err as Error).message).toMatch(bad.error);
  });

  it.each(Object.entries(corpus).filter(([, c]) => c.stage === "model"))(
    "%s (caught against the model's factor shapes, before any graph runs)",
    async (_name, bad) => {
      const lora = await readLora(bad.path);
      // Where the editors check (the built graph's factor shapes) and where the policies check.
      expect(() => checkLoraCoverage(lora, DEMO_SHAPES, "demo")).toThrow(bad.error);
      expect(() => loraParameters(lora, DEMO_SHAPES, lora.file!)).toThrow(bad.error);
      // Given only the graph's keys, coverage still catches unknown modules.
      if (_name === "unknown-module")
        expect(() => checkLoraCoverage(lora, new Set(Object.keys(DEMO_SHAPES)), "demo")).toThrow(bad.error);
    },
  );

  it("has a case for every problem the issue lists", () => {
    for (const name of [
      "config-not-json",
      "alpha-not-a-number",
      "peft-weights-without-config",
      "wrong-shape",
      "unknown-module",
    ])
      expect(Object.keys(corpus)).toContain(name);
  });
});

describe("LoRA folders accepted on purpose", () => {
  it("a diffusers pytorch_lora_weights.safetensors without config: alpha = rank, as diffusers reads it", async () => {
    const dir = await writeLoraFolder(
      join(corpusDir, "ok-diffusers"),
      goodTensors(),
      null,
      "pytorch_lora_weights.safetensors",
    );
    const read = await readLora(dir);
    expect([read.rank, read.alpha]).toEqual([2, 2]);
    expect(read.file).toBe(join(dir, "pytorch_lora_weights.safetensors"));
  });

  it("PEFT weights without config when .alpha tensors or the caller give the alpha", async () => {
    const Q = "transformer.transformer_blocks.0.attn.to_q.alpha";
    const K = "transformer.single_transformer_blocks.0.attn.to_k.alpha";
    const scalar = (v: number) => ({ dtype: "float32" as const, shape: [], data: Float32Array.of(v) });
    const withAlphas = await writeLoraFolder(
      join(corpusDir, "ok-alpha-tensors"),
      { ...goodTensors(), [Q]: scalar(8), [K]: scalar(8) },
      null,
    );
    expect((await readLora(withAlphas)).alpha).toBe(8);
    const bare = corpus["peft-weights-without-config"]!.path;
    expect((await readLora(bare, { alpha: 6 })).alpha).toBe(6);
    expect((await readLora(bare, { alpha: "rank" })).alpha).toBe(2);
    await expect(readLora(bare, { alpha: -1 })).rejects.toThrow(/alpha must be a positive number, got -1/);
  });

  it("rsLoRA configs: alpha/√r is the same update as alpha·√r read as alpha/r", async () => {
    const dir = await writeLoraFolder(join(corpusDir, "ok-rslora"), goodTensors(), {
      ...GOOD_CONFIG,
      use_rslora: true,
    });
    expect((await readLora(dir)).alpha).toBeCloseTo(4 * Math.sqrt(2), 6);
  });

  it("the good folder itself, against the model", async () => {
    const dir = await writeLoraFolder(join(corpusDir, "ok-peft"), goodTensors());
    const read = await readLora(dir);
    expect([read.rank, read.alpha]).toEqual([2, 4]);
    expect(() => checkLoraCoverage(read, DEMO_SHAPES, "demo")).not.toThrow();
    expect(Object.keys(loraParameters(read, DEMO_SHAPES, dir))).toEqual(Object.keys(DEMO_SHAPES));
  });
});
