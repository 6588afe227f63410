import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { openSafetensors, readTensorFloat32, writeFileAtomic, writeSafetensors } from "@edit-r1/engine";
import { FluxKontextError } from "./flux-kontext-error.js";

/** A LoRA adapter of the FLUX transformer, keys in PEFT form without prefix (`<module>.lora_A.weight`). */
export interface FluxLora {
  rank: number;
  /** PEFT lora_alpha: the update is scaled by alpha / rank. */
  alpha: number;
  /** Module names (`transformer_blocks.0.attn.to_q`, …), sorted. */
  modules: string[];
  /** `<module>.lora_A.weight` [rank, in] and `<module>.lora_B.weight` [out, rank], float32. */
  factors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** Where PEFT and diffusers put the weights inside an adapter folder. */
const WEIGHT_FILES = ["adapter_model.safetensors", "pytorch_lora_weights.safetensors"];
// PEFT saves under the wrapped model ("base_model.model."), diffusers' pipelines under the component.
const PREFIXES = ["base_model.model.", "transformer."];
const FACTOR = /^(.*)\.(lora_A|lora_B)\.weight$/;

/**
 * Reads a PEFT or diffusers LoRA of the FLUX transformer: `path` is a `.safetensors` file or a folder with
 * `adapter_model.safetensors` (PEFT) or `pytorch_lora_weights.safetensors` (diffusers). Keys may carry a
 * `base_model.model.` or `transformer.` prefix. The scale alpha/rank comes from `adapter_config.json`
 * (beside the file) when present; without it alpha = rank, as diffusers' loader assumes.
 */
export async function loadFluxLora(path: string): Promise<FluxLora> {
  const info = await stat(path).catch(() => undefined);
  if (!info)
    throw new FluxKontextError(`LoRA ${path} does not exist; pass a .safetensors file or an adapter folder`);
  let file = path;
  let dir = join(path, "..");
  if (info.isDirectory()) {
    dir = path;
    const found = [];
    for (const name of WEIGHT_FILES)
      if ((await stat(join(path, name)).catch(() => undefined))?.isFile()) found.push(name);
    if (found.length === 0) {
      throw new FluxKontextError(`LoRA folder ${path} has none of ${WEIGHT_FILES.join(", ")}`);
    }
    file = join(path, found[0]!);
  }
  const config = await readAdapterConfig(join(dir, "adapter_config.json"));
  const ckpt = await openSafetensors(file);
  const factors = new Map<string, { shape: number[]; data: Float32Array }>();
  const unknown: string[] = [];
  for (const name of ckpt.names()) {
    const bare = stripPrefix(name);
    const m = FACTOR.exec(bare);
    if (!m) {
      unknown.push(name);
      continue;
    }
    const t = ckpt.get(name);
    if (t.shape.length !== 2) {
      throw new FluxKontextError(
        `${file}: LoRA factor "${name}" has shape [${t.shape.join(", ")}]; factors are 2-D`,
      );
    }
    factors.set(bare, { shape: [...t.shape], data: await readTensorFloat32(t) });
  }
  if (unknown.length > 0) {
    throw new FluxKontextError(
      `${file}: ${unknown.length} key(s) are not PEFT LoRA factors (<module>.lora_A.weight / .lora_B.weight), ` +
        `e.g. "${unknown[0]}". Convert kohya/other LoRA formats to PEFT keys first.`,
    );
  }
  const modules = [...new Set([...factors.keys()].map((k) => FACTOR.exec(k)![1]!))].sort();
  if (modules.length === 0) throw new FluxKontextError(`${file} holds no LoRA factors`);
  let rank: number | undefined;
  for (const m of modules) {
    const a = factors.get(`${m}.lora_A.weight`);
    const b = factors.get(`${m}.lora_B.weight`);
    if (!a || !b) throw new FluxKontextError(`${file}: module "${m}" has only one of lora_A and lora_B`);
    if (a.shape[0] !== b.shape[1]) {
      throw new FluxKontextError(
        `${file}: module "${m}" has lora_A [${a.shape}] and lora_B [${b.shape}] of different ranks`,
      );
    }
    if (rank !== undefined && a.shape[0] !== rank) {
      throw new FluxKontextError(
        `${file}: modules have different ranks (${rank} and ${a.shape[0]}); that is not supported`,
      );
    }
    rank = a.shape[0]!;
  }
  if (config.r !== undefined && config.r !== rank) {
    throw new FluxKontextError(
      `${dir}/adapter_config.json says r = ${config.r} but the factors have rank ${rank}`,
    );
  }
  return { rank: rank!, alpha: config.alpha ?? rank!, modules, factors };
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
    throw new FluxKontextError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    const v = json[k];
    if (v && typeof v === "object" && Object.keys(v).length > 0) {
      throw new FluxKontextError(
        `${path}: per-module ${k} is not supported; use one rank and alpha for all modules`,
      );
    }
  }
  const out: { r?: number; alpha?: number } = {};
  if (typeof json.r === "number") out.r = json.r;
  if (typeof json.lora_alpha === "number") out.alpha = json.lora_alpha;
  return out;
}

export interface SaveFluxLoraOptions {
  /**
   * "peft" (default): `adapter_model.safetensors` with `base_model.model.` keys; "diffusers":
   * `pytorch_lora_weights.safetensors` with `transformer.` keys (what `pipe.load_lora_weights` reads).
   * Both write `adapter_config.json` so rank and alpha travel with the weights.
   */
  format?: "peft" | "diffusers";
  /** Recorded as base_model_name_or_path. */
  baseModel?: string;
}

/** Writes a LoRA adapter folder (atomically per file) that `loadFluxLora`, PEFT and diffusers read. */
export async function saveFluxLora(
  dir: string,
  lora: FluxLora,
  options: SaveFluxLoraOptions = {},
): Promise<string> {
  const format = options.format ?? "peft";
  const prefix = format === "peft" ? "base_model.model." : "transformer.";
  const file = join(dir, format === "peft" ? WEIGHT_FILES[0]! : WEIGHT_FILES[1]!);
  await mkdir(dir, { recursive: true });
  const tensors = [...lora.factors].map(
    ([k, t]) => [prefix + k, { dtype: "float32" as const, shape: t.shape, data: t.data }] as const,
  );
  await writeSafetensors(file, tensors, { metadata: { format: "pt" } });
  const config = {
    peft_type: "LORA",
    task_type: null,
    r: lora.rank,
    lora_alpha: lora.alpha,
    target_modules: [
      ...new Set(lora.modules.map((m) => m.replace(/^(single_)?transformer_blocks\.\d+\./, ""))),
    ].sort(),
    lora_dropout: 0,
    bias: "none",
    init_lora_weights: "gaussian",
    base_model_name_or_path: options.baseModel ?? "black-forest-labs/FLUX.1-Kontext-dev",
  };
  await writeFileAtomic(join(dir, "adapter_config.json"), `${JSON.stringify(config, null, 2)}\n`);
  return file;
}
