import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { openSafetensors, readTensorFloat32, writeFileAtomic, writeSafetensors } from "@edit-r1/engine";
import { AdapterKitError } from "./errors.js";

/** A LoRA of a transformer, keys in PEFT form without prefix (`<module>.lora_A.weight`). */
export interface LoraFile {
  rank: number;
  /** PEFT lora_alpha: the update is scaled by alpha / rank. */
  alpha: number;
  /** Module names (`transformer_blocks.0.attn.to_q`, …), sorted. */
  modules: string[];
  /** `<module>.lora_A.weight` [rank, in] and `<module>.lora_B.weight` [out, rank], float32. */
  factors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** The file PEFT writes, and the one this package writes. */
export const LORA_WEIGHTS_FILE = "adapter_model.safetensors";
export const LORA_CONFIG_FILE = "adapter_config.json";
/** Weight files looked for in a LoRA folder, in order: PEFT's, then diffusers' `save_lora_weights`. */
const WEIGHT_FILES = [LORA_WEIGHTS_FILE, "pytorch_lora_weights.safetensors"];
/**
 * Key prefixes a transformer LoRA appears with: raw PEFT saves under the wrapped model ("base_model.model."),
 * diffusers' pipelines under the component ("transformer."); some tools write bare module names.
 */
const PREFIXES = ["base_model.model.", "transformer."];
/** `<module>.lora_A|lora_B[.default][.weight]` or `<module>.alpha`. */
const FACTOR = /^(.*)\.(lora_A|lora_B)(?:\.default)?(?:\.weight)?$/;
const ALPHA = /^(.*)\.alpha$/;

export interface ReadLoraOptions {
  /** The alpha to assume when neither `adapter_config.json` nor `.alpha` tensors give one (default: rank). */
  alpha?: number;
}

/**
 * Reads a PEFT or diffusers LoRA: `path` is a `.safetensors` file or a folder holding `adapter_model.safetensors`
 * (PEFT) or `pytorch_lora_weights.safetensors` (diffusers). Keys may carry a `base_model.model.` or
 * `transformer.` prefix or none, and end in `.lora_A`/`.lora_B` with or without `.default` and `.weight`.
 * alpha comes from `adapter_config.json` beside the file, else from `.alpha` tensors, else alpha = rank —
 * diffusers' rule for a file without alpha (scale 1.0), which is how the released Edit-R1 LoRAs are sampled.
 */
export async function readLora(path: string, options: ReadLoraOptions = {}): Promise<LoraFile> {
  const info = await stat(path).catch(() => undefined);
  if (!info)
    throw new AdapterKitError(`LoRA ${path} does not exist; pass a .safetensors file or an adapter folder`);
  let file = path;
  let dir = join(path, "..");
  if (info.isDirectory()) {
    dir = path;
    let found: string | undefined;
    for (const name of WEIGHT_FILES)
      if (!found && (await stat(join(path, name)).catch(() => undefined))?.isFile()) found = name;
    if (!found)
      throw new AdapterKitError(
        `LoRA folder ${path} has none of ${WEIGHT_FILES.join(", ")}; pass the folder a training run wrote (its lora/)`,
      );
    file = join(path, found);
  }
  const config = await readAdapterConfig(join(dir, LORA_CONFIG_FILE));
  const ckpt = await openSafetensors(file).catch((e: Error) => {
    throw new AdapterKitError(`cannot read the LoRA ${file}: ${e.message}`);
  });
  const factors = new Map<string, { shape: number[]; data: Float32Array }>();
  const alphas = new Map<string, number>();
  const unknown: string[] = [];
  for (const name of ckpt.names()) {
    const bare = stripPrefix(name);
    const alpha = ALPHA.exec(bare);
    if (alpha) {
      alphas.set(alpha[1]!, (await readTensorFloat32(ckpt.get(name)))[0]!);
      continue;
    }
    const m = FACTOR.exec(bare);
    if (!m) {
      unknown.push(name);
      continue;
    }
    const t = ckpt.get(name);
    if (t.shape.length !== 2)
      throw new AdapterKitError(
        `${file}: LoRA factor "${name}" has shape [${t.shape.join(", ")}]; factors are 2-D`,
      );
    factors.set(`${m[1]}.${m[2]}.weight`, { shape: [...t.shape], data: await readTensorFloat32(t) });
  }
  if (unknown.length > 0)
    throw new AdapterKitError(
      `${file}: ${unknown.length} key(s) are not PEFT LoRA factors (<module>.lora_A.weight / .lora_B.weight), ` +
        `e.g. "${unknown[0]}". Convert kohya/other LoRA formats to PEFT keys first.`,
    );
  const modules = [...new Set([...factors.keys()].map((k) => FACTOR.exec(k)![1]!))].sort();
  if (modules.length === 0) throw new AdapterKitError(`${file} holds no LoRA factors; is this a LoRA file?`);
  let rank: number | undefined;
  for (const m of modules) {
    const a = factors.get(`${m}.lora_A.weight`);
    const b = factors.get(`${m}.lora_B.weight`);
    if (!a || !b) throw new AdapterKitError(`${file}: module "${m}" has only one of lora_A and lora_B`);
    if (a.shape[0] !== b.shape[1])
      throw new AdapterKitError(
        `${file}: module "${m}" has lora_A [${a.shape}] and lora_B [${b.shape}] of different ranks`,
      );
    if (rank !== undefined && a.shape[0] !== rank)
      throw new AdapterKitError(
        `${file}: modules have different ranks (${rank} and ${a.shape[0]}); one rank for all modules is supported`,
      );
    rank = a.shape[0]!;
  }
  if (config.r !== undefined && config.r !== rank)
    throw new AdapterKitError(
      `${join(dir, LORA_CONFIG_FILE)} says r = ${config.r} but the factors have rank ${rank}`,
    );
  const alphaValues = [...new Set(alphas.values())];
  if (alphaValues.length > 1)
    throw new AdapterKitError(
      `${file}: .alpha tensors differ between modules (${alphaValues.slice(0, 3)}); not supported`,
    );
  const alpha = config.alpha ?? alphaValues[0] ?? options.alpha ?? rank!;
  return { rank: rank!, alpha, modules, factors };
}

function stripPrefix(name: string): string {
  for (const p of PREFIXES) if (name.startsWith(p)) return name.slice(p.length);
  return name;
}

async function readAdapterConfig(path: string): Promise<{ r?: number; alpha?: number }> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return {};
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new AdapterKitError(`${path} is not valid JSON (${(e as Error).message}); fix or delete it`);
  }
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    const v = json[k];
    if (v && typeof v === "object" && Object.keys(v).length > 0)
      throw new AdapterKitError(
        `${path}: per-module ${k} is not supported; use one rank and alpha for all modules`,
      );
  }
  const out: { r?: number; alpha?: number } = {};
  for (const [key, field] of [
    ["r", "r"],
    ["lora_alpha", "alpha"],
  ] as const) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !(v > 0))
      throw new AdapterKitError(`${path}: ${key} must be a positive number, got ${JSON.stringify(v)}`);
    out[field] = v;
  }
  return out;
}

export interface WriteLoraOptions {
  /** Recorded as base_model_name_or_path in adapter_config.json. */
  baseModel: string;
}

/**
 * Writes a LoRA folder: `adapter_model.safetensors` with `transformer.`-prefixed PEFT keys (what diffusers'
 * `load_lora_weights` reads for a transformer; this reader and PEFT's accept it too) in float32, and PEFT's
 * `adapter_config.json` (r, lora_alpha, target_modules) so rank and alpha travel with the weights. Each file
 * is written atomically.
 */
export async function writeLora(dir: string, lora: LoraFile, options: WriteLoraOptions): Promise<void> {
  const tensors = [...lora.factors]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(
      ([k, t]) => [`transformer.${k}`, { dtype: "float32" as const, shape: t.shape, data: t.data }] as const,
    );
  await writeSafetensors(join(dir, LORA_WEIGHTS_FILE), tensors, { metadata: { format: "pt" } });
  const config = {
    peft_type: "LORA",
    task_type: null,
    r: lora.rank,
    lora_alpha: lora.alpha,
    // PEFT matches target_modules by suffix; the per-block prefix is dropped so the list stays short.
    target_modules: [
      ...new Set(lora.modules.map((m) => m.replace(/^(?:single_)?transformer_blocks\.\d+\./, ""))),
    ].sort(),
    lora_dropout: 0,
    bias: "none",
    init_lora_weights: "gaussian",
    base_model_name_or_path: options.baseModel,
  };
  await writeFileAtomic(join(dir, LORA_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
}
