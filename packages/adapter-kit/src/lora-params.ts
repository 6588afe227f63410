import { type ParamSet, Rng } from "@edit-r1/core";
import { numel } from "@edit-r1/engine";
import { AdapterKitError } from "./errors.js";
import type { LoraFile } from "./lora-file.js";

/** A LoRA's rank, alpha and PEFT target modules (one rank and alpha for every module). */
export interface LoraSettings {
  rank: number;
  alpha: number;
  targets: readonly string[];
}

/** Factor shapes by PEFT key (`<module>.lora_A.weight` [r, in], `<module>.lora_B.weight` [out, r]), in build order. */
export type LoraShapes = Readonly<Record<string, readonly number[]>>;

const FACTOR_SUFFIX = /\.lora_[AB]\.weight$/;

/** The modules a set of factor keys belongs to, sorted. */
export function loraModules(keys: Iterable<string>): string[] {
  return [...new Set([...keys].map((k) => k.replace(FACTOR_SUFFIX, "")))].sort();
}

/**
 * PEFT's "gaussian" initialisation: A ~ N(0, (1/r)²), B = 0, so the adapted model starts as the base model.
 * A is drawn from `Rng.derive(seed, label)` in the order of `shapes`, so one seed always gives one θ₀.
 */
export function initLoraParameters(shapes: LoraShapes, rank: number, seed: number, label: string): ParamSet {
  const rng = Rng.derive(seed, label);
  const out: ParamSet = {};
  for (const [key, shape] of Object.entries(shapes)) {
    const n = numel(shape);
    out[key] = key.endsWith(".lora_A.weight") ? rng.normals(n).map((v) => v / rank) : new Float32Array(n);
  }
  return out;
}

/** `"a", "b", "c" and 4 more`: the first few of a list, quoted. */
export function someOf(items: readonly string[], shown = 3): string {
  const head = items
    .slice(0, shown)
    .map((i) => JSON.stringify(i))
    .join(", ");
  return items.length > shown ? `${head} and ${items.length - shown} more` : head;
}

/**
 * Checks every factor of `file` that `shapes` has against its shape there; throws naming the file, the first
 * tensor that does not fit with its found and expected shapes, how many others differ, and what to do.
 */
export function checkLoraShapes(
  file: LoraFile,
  shapes: LoraShapes,
  where: string,
  model = "this model",
): void {
  const wrong: { key: string; found: readonly number[]; expected: readonly number[] }[] = [];
  for (const [key, f] of file.factors) {
    const expected = shapes[key];
    if (!expected) continue;
    if (f.shape.length !== expected.length || f.shape.some((d, i) => d !== expected[i]))
      wrong.push({ key, found: f.shape, expected });
  }
  if (wrong.length === 0) return;
  const [first] = wrong;
  throw new AdapterKitError(
    `${where}: LoRA factor "${first!.key}" is [${first!.found.join(", ")}] but ${model} needs ` +
      `[${first!.expected.join(", ")}]${
        wrong.length > 1
          ? ` (${wrong.length - 1} more factor(s) differ too, e.g. ${someOf(
              wrong.slice(1).map((w) => w.key),
              2,
            )})`
          : ""
      }; ` +
      "lora_A is [rank, in_features] and lora_B [out_features, rank], so the LoRA was trained on another " +
      "model or another size of it. Use a LoRA trained on this model, or load the model it was made for (--model, --base).",
  );
}

/**
 * A loaded LoRA as parameters of a model whose LoRA factors have `shapes`, checked module by module: a factor
 * the model does not have, or one of another shape, is an error naming the module, the file and the shapes.
 * `scale` multiplies every lora_B (a LoRA at scale s equals the same LoRA with s·B).
 */
export function loraParameters(file: LoraFile, shapes: LoraShapes, where: string, scale = 1): ParamSet {
  const unknown = [...file.factors.keys()].filter((k) => !(k in shapes));
  if (unknown.length)
    throw new AdapterKitError(
      `${where}: ${unknown.length} LoRA factor(s) target modules this model does not have or cannot adapt: ` +
        `${someOf(loraModules(unknown))} (the model's LoRA modules look like ` +
        `"${Object.keys(shapes)[0]?.replace(FACTOR_SUFFIX, "")}"); was the LoRA trained on another model? ` +
        "Use a LoRA trained on this model, or load the model it was made for (--model, --base).",
    );
  checkLoraShapes(file, shapes, where);
  const out: ParamSet = {};
  const missing: string[] = [];
  for (const [key] of Object.entries(shapes)) {
    const f = file.factors.get(key);
    if (!f) {
      missing.push(key);
      continue;
    }
    out[key] =
      key.endsWith(".lora_B.weight") && scale !== 1
        ? f.data.map((v) => v * scale)
        : Float32Array.from(f.data);
  }
  // Modules the file does not adapt keep a zero update: A = 0 and B = 0.
  for (const key of missing) out[key] = new Float32Array(numel(shapes[key]!));
  return out;
}

/** Parameters (factor data by PEFT key) as a LoRA file of `settings`' rank and alpha, checked against `shapes`. */
export function loraFileOf(
  params: ParamSet,
  shapes: LoraShapes,
  settings: LoraSettings,
  where: string,
): LoraFile {
  const factors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [key, shape] of Object.entries(shapes)) {
    const data = params[key];
    const n = numel(shape);
    if (!data || data.length !== n)
      throw new AdapterKitError(
        `${where}: parameter "${key}" needs ${n} values ([${shape.join(", ")}]), got ${data ? data.length : "none"}`,
      );
    factors.set(key, { shape: [...shape], data });
  }
  return { rank: settings.rank, alpha: settings.alpha, modules: loraModules(factors.keys()), factors };
}
