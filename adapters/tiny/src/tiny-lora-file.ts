import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ParamSet } from "@edit-r1/core";
import { openSafetensors, writeFileAtomic, writeSafetensors } from "@edit-r1/engine";
import { TinyAdapterError } from "./errors.js";

export const LORA_WEIGHTS_FILE = "adapter_model.safetensors";
export const LORA_CONFIG_FILE = "adapter_config.json";
/** diffusers' key prefix for a transformer LoRA; raw PEFT files use "base_model.model." instead. */
const KEY_PREFIXES = ["transformer.", "base_model.model."];

export interface TinyLoraFile {
  /** Factors by PEFT key without prefix (`transformer_blocks.0.attn.to_q.lora_A.weight`). */
  params: ParamSet;
  rank: number;
  alpha: number;
  targets: string[];
}

/**
 * Writes LoRA factors the way diffusers loads them: `adapter_model.safetensors` with `transformer.`-prefixed
 * PEFT keys, plus PEFT's `adapter_config.json` (r, lora_alpha, target_modules), into `dir`.
 */
export async function writeTinyLora(
  dir: string,
  params: ParamSet,
  shapes: Readonly<Record<string, readonly number[]>>,
  lora: { rank: number; alpha: number; targets: readonly string[] },
): Promise<void> {
  const tensors = Object.entries(params).map(([k, data]) => {
    const shape = shapes[k];
    if (!shape)
      throw new TinyAdapterError(`writeTinyLora: "${k}" is not a LoRA parameter of the tiny model.`);
    return [`transformer.${k}`, { dtype: "float32" as const, shape, data }] as const;
  });
  await writeSafetensors(join(dir, LORA_WEIGHTS_FILE), tensors, { metadata: { format: "pt" } });
  const config = {
    peft_type: "LORA",
    base_model_name_or_path: "edit-r1/adapter-tiny",
    r: lora.rank,
    lora_alpha: lora.alpha,
    target_modules: [...lora.targets],
    lora_dropout: 0,
    bias: "none",
    init_lora_weights: "gaussian",
  };
  await writeFileAtomic(join(dir, LORA_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Reads a LoRA folder (or its `adapter_model.safetensors`) written by writeTinyLora or PEFT. Without an
 * `adapter_config.json`, alpha = rank (diffusers' rule when a file carries no alpha).
 */
export async function readTinyLora(path: string): Promise<TinyLoraFile> {
  const isDir = (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
  const dir = isDir ? path : join(path, "..");
  const file = isDir ? join(path, LORA_WEIGHTS_FILE) : path;
  const checkpoint = await openSafetensors(file).catch((e: Error) => {
    throw new TinyAdapterError(
      `cannot read the LoRA ${file}: ${e.message}. Pass a folder with ${LORA_WEIGHTS_FILE}.`,
    );
  });
  const params: ParamSet = {};
  let rank = 0;
  for (const name of checkpoint.names()) {
    const prefix = KEY_PREFIXES.find((p) => name.startsWith(p)) ?? "";
    const key = name.slice(prefix.length).replace(".default.weight", ".weight");
    if (!/\.lora_[AB]\.weight$/.test(key)) continue;
    params[key] = await checkpoint.readFloat32(name);
    if (key.endsWith("lora_A.weight")) rank = checkpoint.get(name).shape[0]!;
  }
  if (rank === 0) throw new TinyAdapterError(`${file}: no lora_A/lora_B tensors found; is this a LoRA file?`);
  let alpha = rank;
  let targets: string[] = [];
  const configText = await readFile(join(dir, LORA_CONFIG_FILE), "utf8").catch(() => undefined);
  if (configText !== undefined) {
    const config = JSON.parse(configText) as { r?: number; lora_alpha?: number; target_modules?: string[] };
    if (config.r !== undefined && config.r !== rank) {
      throw new TinyAdapterError(
        `${join(dir, LORA_CONFIG_FILE)}: r is ${config.r} but the factors have rank ${rank}.`,
      );
    }
    alpha = config.lora_alpha ?? rank;
    targets = config.target_modules ?? [];
  }
  if (targets.length === 0) {
    // The modules present in the file are the targets (PEFT matches by suffix, so full names work).
    targets = [...new Set(Object.keys(params).map((k) => k.replace(/\.lora_[AB]\.weight$/, "")))];
  }
  return { params, rank, alpha, targets };
}
