import { readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
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
  /** The weights file it was read from (readLora sets it), for messages. */
  file?: string;
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
  /**
   * The alpha to use when neither `adapter_config.json` nor `.alpha` tensors give one: a number, or "rank"
   * (diffusers' reading, scale 1.0). Without it, such a LoRA is read at alpha = rank when it is a diffusers
   * file, and refused when it is PEFT's `adapter_model.safetensors` (its config is missing).
   */
  alpha?: number | "rank";
}

/**
 * Reads and checks a PEFT or diffusers LoRA: `path` is a `.safetensors` file or a folder holding
 * `adapter_model.safetensors` (PEFT) or `pytorch_lora_weights.safetensors` (diffusers). Keys may carry a
 * `base_model.model.` or `transformer.` prefix or none, and end in `.lora_A`/`.lora_B` with or without
 * `.default` and `.weight`. The whole folder is checked before anything is returned: the config (valid JSON,
 * r and lora_alpha positive, one rank and alpha, a LoRA of PEFT's plain kind), every factor (2-D, paired,
 * one rank agreeing with the config, finite values) and every `.alpha` tensor.
 *
 * alpha comes from `adapter_config.json` beside the file, else from `.alpha` tensors, else `options.alpha`,
 * else alpha = rank for a diffusers file (`pytorch_lora_weights.safetensors` or a single file of another name):
 * diffusers' rule for a file without alpha (scale 1.0), which is how the released Edit-R1 LoRAs are sampled.
 * PEFT's `adapter_model.safetensors` without its `adapter_config.json` is refused: PEFT always writes both,
 * so the config was lost and the strength the LoRA was trained at is unknown.
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
  const configPath = join(dir, LORA_CONFIG_FILE);
  const config = await readAdapterConfig(configPath);
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
      const values = await readTensorFloat32(ckpt.get(name));
      if (values.length !== 1 || !(Number.isFinite(values[0]) && values[0]! > 0))
        throw new AdapterKitError(
          `${file}: "${name}" must hold one positive number (the module's lora_alpha), ` +
            `got ${values.length === 1 ? values[0] : `${values.length} values`}; fix or remove the .alpha tensors`,
        );
      alphas.set(alpha[1]!, values[0]!);
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
        `${file}: LoRA factor "${name}" has shape [${t.shape.join(", ")}]; factors are 2-D ` +
          "(lora_A [rank, in_features], lora_B [out_features, rank]); is this a LoRA of Linear layers?",
      );
    const data = await readTensorFloat32(t);
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0)
      throw new AdapterKitError(
        `${file}: LoRA factor "${name}" holds ${data[bad]} (element ${bad}); the file is damaged or was saved ` +
          "from a diverged run. Use an earlier checkpoint's LoRA (checkpoints/step-*/lora).",
      );
    const key = `${m[1]}.${m[2]}.weight`;
    if (factors.has(key))
      throw new AdapterKitError(
        `${file}: module "${m[1]}" has two ${m[2]} tensors (keys with and without a prefix or .default); keep one`,
      );
    factors.set(key, { shape: [...t.shape], data });
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
      `${configPath} says r = ${config.r} but the factors have rank ${rank} (${file}); ` +
        "the config belongs to other weights: use the adapter_config.json saved with these weights",
    );
  const alphaValues = [...new Set(alphas.values())];
  if (alphaValues.length > 1)
    throw new AdapterKitError(
      `${file}: .alpha tensors differ between modules (${alphaValues.slice(0, 3)}); one alpha for all modules is supported`,
    );
  if (typeof options.alpha === "number" && !(Number.isFinite(options.alpha) && options.alpha > 0))
    throw new AdapterKitError(`the LoRA alpha must be a positive number, got ${options.alpha}`);
  // rsLoRA scales by alpha/√r instead of alpha/r: the same update as alpha·√r read the usual way.
  let alpha = config.alpha !== undefined && config.rslora ? config.alpha * Math.sqrt(rank!) : config.alpha;
  alpha ??= alphaValues[0];
  if (alpha === undefined && options.alpha !== undefined)
    alpha = options.alpha === "rank" ? rank! : options.alpha;
  if (alpha === undefined) {
    if (basename(file) === LORA_WEIGHTS_FILE)
      throw new AdapterKitError(
        `${file} is PEFT's weights file, but ${configPath} is missing: the LoRA's lora_alpha (its strength; the ` +
          `update is alpha/r·B·A, with r = ${rank} from the factors) is unknown. Copy the ${LORA_CONFIG_FILE} ` +
          `saved with the weights into ${dir}, or give the alpha (edit-r1: --lora-alpha N; readLora: { alpha: N }); ` +
          `--lora-alpha ${rank} applies it as diffusers would (scale 1).`,
      );
    // diffusers' rule for a LoRA file without alpha: alpha = rank (scale 1.0).
    alpha = rank!;
  }
  return { rank: rank!, alpha, modules, factors, file };
}

function stripPrefix(name: string): string {
  for (const p of PREFIXES) if (name.startsWith(p)) return name.slice(p.length);
  return name;
}

async function readAdapterConfig(path: string): Promise<{ r?: number; alpha?: number; rslora?: boolean }> {
  const info = await stat(path).catch(() => undefined);
  if (!info) return {};
  if (!info.isFile())
    throw new AdapterKitError(`${path} is a folder; it must be PEFT's JSON config file (r, lora_alpha)`);
  const text = await readFile(path, "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new AdapterKitError(
      `${path} is not valid JSON (${(e as Error).message}); fix it, or replace it with the ` +
        `${LORA_CONFIG_FILE} saved with the weights`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new AdapterKitError(
      `${path} must hold a JSON object (PEFT's LoraConfig: r, lora_alpha, target_modules…), got ` +
        `${Array.isArray(parsed) ? "an array" : JSON.stringify(parsed)}`,
    );
  const json = parsed as Record<string, unknown>;
  if (json.peft_type !== undefined && json.peft_type !== null && json.peft_type !== "LORA")
    throw new AdapterKitError(
      `${path}: peft_type is ${JSON.stringify(json.peft_type)}; only LoRA adapters (peft_type "LORA") can be applied`,
    );
  if (json.use_dora === true)
    throw new AdapterKitError(
      `${path}: use_dora is true; DoRA adapters (LoRA plus magnitude vectors) are not supported, only plain LoRA`,
    );
  const targets = json.target_modules;
  if (
    targets !== undefined &&
    targets !== null &&
    typeof targets !== "string" &&
    !(Array.isArray(targets) && targets.every((t) => typeof t === "string"))
  )
    throw new AdapterKitError(
      `${path}: target_modules must be a list of module names (or a regular expression), got ${JSON.stringify(targets)}`,
    );
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    const v = json[k];
    if (v && typeof v === "object" && Object.keys(v).length > 0)
      throw new AdapterKitError(
        `${path}: per-module ${k} is not supported; use one rank and alpha for all modules`,
      );
  }
  const out: { r?: number; alpha?: number; rslora?: boolean } = {};
  for (const [key, field] of [
    ["r", "r"],
    ["lora_alpha", "alpha"],
  ] as const) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v) || (key === "r" && !Number.isInteger(v)))
      throw new AdapterKitError(
        `${path}: ${key} must be a positive ${key === "r" ? "integer (the rank)" : "number"}, got ${JSON.stringify(v)}; ` +
          `fix it, or replace the file with the ${LORA_CONFIG_FILE} saved with the weights`,
      );
    out[field] = v;
  }
  if (json.use_rslora === true) out.rslora = true;
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
