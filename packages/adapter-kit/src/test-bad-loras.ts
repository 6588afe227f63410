import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeSafetensors } from "@edit-r1/engine";
import type { LoraShapes } from "./lora-params.js";

/**
 * The corpus of bad LoRA folders the loader must refuse, written from one good LoRA: a demo model with two
 * LoRA modules (q of double block 0, k of single block 0), rank 2, in = out = 3. Each case is a folder with
 * what PEFT or diffusers would have written, broken in one way, and the message its refusal must give (the
 * file, what is wrong and what to do). `stage` says where it is caught: reading the folder (`readLora`) or
 * fitting it to the model (`checkLoraCoverage` / `loraParameters` with DEMO_SHAPES).
 */
export interface BadLora {
  path: string;
  stage: "read" | "model";
  error: RegExp;
}

const Q = "transformer_blocks.0.attn.to_q";
const K = "single_transformer_blocks.0.attn.to_k";

/** The demo model's LoRA factor shapes (PEFT keys). */
export const DEMO_SHAPES: LoraShapes = {
  [`${K}.lora_A.weight`]: [2, 3],
  [`${K}.lora_B.weight`]: [3, 2],
  [`${Q}.lora_A.weight`]: [2, 3],
  [`${Q}.lora_B.weight`]: [3, 2],
};

type Tensors = Record<string, { dtype: "float32"; shape: number[]; data: Float32Array }>;

const tensor = (shape: number[], fill = 0.5) => ({
  dtype: "float32" as const,
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
});

/** The good LoRA's tensors under `transformer.` keys (what `writeLora` writes). */
export function goodTensors(): Tensors {
  const out: Tensors = {};
  for (const [key, shape] of Object.entries(DEMO_SHAPES)) out[`transformer.${key}`] = tensor([...shape]);
  return out;
}

export const GOOD_CONFIG = {
  peft_type: "LORA",
  r: 2,
  lora_alpha: 4,
  target_modules: ["attn.to_q", "attn.to_k"],
};

/** Writes a LoRA folder: `adapter_model.safetensors` (or `file`) and, unless null, `adapter_config.json`. */
export async function writeLoraFolder(
  dir: string,
  tensors: Tensors,
  config: unknown = GOOD_CONFIG,
  file = "adapter_model.safetensors",
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, file), tensors);
  if (config !== null)
    await writeFile(
      join(dir, "adapter_config.json"),
      typeof config === "string" ? config : JSON.stringify(config),
    );
  return dir;
}

/** Writes every bad case under `root` (one folder each) and returns them by name. */
export async function writeBadLoraCorpus(root: string): Promise<Record<string, BadLora>> {
  const cases: Record<string, BadLora> = {};
  const add = async (
    name: string,
    stage: BadLora["stage"],
    error: RegExp,
    write: (dir: string) => Promise<unknown>,
  ) => {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true });
    await write(dir);
    cases[name] = { path: dir, stage, error };
  };
  const withConfig = (config: unknown) => (dir: string) => writeLoraFolder(dir, goodTensors(), config);
  const withTensors = (edit: (t: Tensors) => void) => (dir: string) => {
    const t = goodTensors();
    edit(t);
    return writeLoraFolder(dir, t);
  };

  // adapter_config.json
  await add(
    "config-not-json",
    "read",
    /config-not-json\/adapter_config\.json is not valid JSON \(.+\); fix it, or replace it with the adapter_config\.json saved with the weights/,
    withConfig("{not json"),
  );
  await add(
    "config-not-an-object",
    "read",
    /adapter_config\.json must hold a JSON object \(PEFT's LoraConfig.*got an array/,
    withConfig([2, 4]),
  );
  await add(
    "config-is-a-folder",
    "read",
    /config-is-a-folder\/adapter_config\.json is a folder; it must be PEFT's JSON config file/,
    async (dir) => {
      await writeLoraFolder(dir, goodTensors(), null);
      await mkdir(join(dir, "adapter_config.json"));
    },
  );
  await add(
    "alpha-not-a-number",
    "read",
    /adapter_config\.json: lora_alpha must be a positive number, got "abc"; fix it/,
    withConfig({ ...GOOD_CONFIG, lora_alpha: "abc" }),
  );
  await add(
    "alpha-zero",
    "read",
    /adapter_config\.json: lora_alpha must be a positive number, got 0/,
    withConfig({ ...GOOD_CONFIG, lora_alpha: 0 }),
  );
  await add(
    "rank-negative",
    "read",
    /adapter_config\.json: r must be a positive integer \(the rank\), got -2/,
    withConfig({ ...GOOD_CONFIG, r: -2 }),
  );
  await add(
    "rank-fractional",
    "read",
    /adapter_config\.json: r must be a positive integer \(the rank\), got 2\.5/,
    withConfig({ ...GOOD_CONFIG, r: 2.5 }),
  );
  await add(
    "rank-disagrees-with-factors",
    "read",
    /adapter_config\.json says r = 8 but the factors have rank 2 \(.*adapter_model\.safetensors\); the config belongs to other weights/,
    withConfig({ ...GOOD_CONFIG, r: 8 }),
  );
  await add(
    "not-a-lora-adapter",
    "read",
    /adapter_config\.json: peft_type is "LOHA"; only LoRA adapters/,
    withConfig({ ...GOOD_CONFIG, peft_type: "LOHA" }),
  );
  await add(
    "dora",
    "read",
    /adapter_config\.json: use_dora is true; DoRA adapters .* are not supported/,
    withConfig({ ...GOOD_CONFIG, use_dora: true }),
  );
  await add(
    "target-modules-not-a-list",
    "read",
    /adapter_config\.json: target_modules must be a list of module names .*got 5/,
    withConfig({ ...GOOD_CONFIG, target_modules: 5 }),
  );
  await add(
    "peft-weights-without-config",
    "read",
    /peft-weights-without-config\/adapter_model\.safetensors is PEFT's weights file, but .*adapter_config\.json is missing: the LoRA's lora_alpha .* is unknown\. Copy the adapter_config\.json .*--lora-alpha N/,
    withConfig(null),
  );
  await add(
    "rank-pattern",
    "read",
    /adapter_config\.json: per-module rank_pattern is not supported/,
    withConfig({ ...GOOD_CONFIG, rank_pattern: { to_q: 4 } }),
  );

  // The weights file
  await add(
    "no-weights-file",
    "read",
    /no-weights-file has none of adapter_model\.safetensors, pytorch_lora_weights\.safetensors; pass the folder a training run wrote/,
    (dir) => writeFile(join(dir, "adapter_config.json"), JSON.stringify(GOOD_CONFIG)),
  );
  await add(
    "weights-not-safetensors",
    "read",
    /cannot read the LoRA .*weights-not-safetensors\/adapter_model\.safetensors/,
    async (dir) => {
      await writeFile(join(dir, "adapter_model.safetensors"), "PK\u0003\u0004 a zip, not safetensors");
      await writeFile(join(dir, "adapter_config.json"), JSON.stringify(GOOD_CONFIG));
    },
  );
  await add(
    "kohya-keys",
    "read",
    /kohya-keys\/adapter_model\.safetensors: 1 key\(s\) are not PEFT LoRA factors .*Convert kohya/,
    (dir) =>
      writeLoraFolder(dir, {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": tensor([2, 3]),
      }),
  );
  await add(
    "lora-b-missing",
    "read",
    /module "transformer_blocks\.0\.attn\.to_q" has only one of lora_A and lora_B/,
    withTensors((t) => delete t[`transformer.${Q}.lora_B.weight`]),
  );
  await add(
    "ranks-differ-in-a-module",
    "read",
    /module "transformer_blocks\.0\.attn\.to_q" has lora_A \[2,3\] and lora_B \[3,4\] of different ranks/,
    withTensors((t) => {
      t[`transformer.${Q}.lora_B.weight`] = tensor([3, 4]);
    }),
  );
  await add(
    "ranks-differ-between-modules",
    "read",
    /modules have different ranks \(2 and 4\); one rank for all modules is supported/,
    withTensors((t) => {
      t[`transformer.${Q}.lora_A.weight`] = tensor([4, 3]);
      t[`transformer.${Q}.lora_B.weight`] = tensor([3, 4]);
    }),
  );
  await add(
    "factor-not-2d",
    "read",
    /LoRA factor "transformer\.transformer_blocks\.0\.attn\.to_q\.lora_A\.weight" has shape \[2, 3, 1\]; factors are 2-D/,
    withTensors((t) => {
      t[`transformer.${Q}.lora_A.weight`] = tensor([2, 3, 1]);
    }),
  );
  await add(
    "nan-values",
    "read",
    /"transformer\.transformer_blocks\.0\.attn\.to_q\.lora_B\.weight" holds NaN \(element 0\); the file is damaged .*Use an earlier checkpoint's LoRA/,
    withTensors((t) => {
      t[`transformer.${Q}.lora_B.weight`] = tensor([3, 2], Number.NaN);
    }),
  );
  await add(
    "duplicate-factor",
    "read",
    /module "transformer_blocks\.0\.attn\.to_q" has two lora_A tensors .*keep one/,
    withTensors((t) => {
      t[`base_model.model.${Q}.lora_A.weight`] = tensor([2, 3]);
    }),
  );
  await add(
    "alpha-tensor-negative",
    "read",
    /"transformer\.transformer_blocks\.0\.attn\.to_q\.alpha" must hold one positive number .*got -1/,
    (dir) => writeLoraFolder(dir, { ...goodTensors(), [`transformer.${Q}.alpha`]: tensor([], -1) }, null),
  );
  await add(
    "alpha-tensors-differ",
    "read",
    /\.alpha tensors differ between modules \((4,8|8,4)\); one alpha for all modules is supported/,
    (dir) =>
      writeLoraFolder(
        dir,
        {
          ...goodTensors(),
          [`transformer.${Q}.alpha`]: tensor([], 4),
          [`transformer.${K}.alpha`]: tensor([], 8),
        },
        null,
      ),
  );

  // Readable, but not a LoRA of this model
  await add(
    "wrong-shape",
    "model",
    /wrong-shape\/adapter_model\.safetensors: LoRA factor "(single_)?transformer_blocks\.0\.attn\.to_[qk]\.lora_A\.weight" is \[2, 4\] but (the demo transformer|this model) needs \[2, 3\] \(1 more factor\(s\) differ too.*\); lora_A is \[rank, in_features\].*Use a LoRA trained on this model/,
    withTensors((t) => {
      t[`transformer.${Q}.lora_A.weight`] = tensor([2, 4]);
      t[`transformer.${K}.lora_A.weight`] = tensor([2, 4]);
    }),
  );
  await add(
    "unknown-module",
    "model",
    /^(?=.*unknown-module\/adapter_model\.safetensors: )(?=.*"transformer_blocks\.9\.attn\.to_q")(?=.*does not have or cannot adapt)(?=.*Use a LoRA trained on this)/s,
    withTensors((t) => {
      t[`transformer.transformer_blocks.9.attn.to_q.lora_A.weight`] = tensor([2, 3]);
      t[`transformer.transformer_blocks.9.attn.to_q.lora_B.weight`] = tensor([3, 2]);
    }),
  );
  return cases;
}
