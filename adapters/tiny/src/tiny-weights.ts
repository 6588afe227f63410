import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSafetensors, writeFileAtomic, writeSafetensors } from "@edit-r1/engine";
import { memoryWeightSource, type WeightSource } from "@edit-r1/models";
import { TinyAdapterError } from "./errors.js";
import { type TinyModelConfig, tinyFluxConfig } from "./tiny-config.js";

/** The shipped weights: `weights/` beside `src/` and `dist/` (both one level below the package root). */
export const DEFAULT_TINY_WEIGHTS_DIR = fileURLToPath(new URL("../weights/", import.meta.url));
export const TINY_WEIGHTS_FILE = "tiny.safetensors";
export const TINY_CONFIG_FILE = "config.json";

/** A tiny model in memory: its config and every weight as float32. */
export interface TinyWeights {
  config: TinyModelConfig;
  tensors: Map<string, { shape: readonly number[]; data: Float32Array }>;
}

/** Reads `config.json` and `tiny.safetensors` from `dir`, with errors that say which file is wrong. */
export async function readTinyWeights(dir: string = DEFAULT_TINY_WEIGHTS_DIR): Promise<TinyWeights> {
  const configPath = join(dir, TINY_CONFIG_FILE);
  let config: TinyModelConfig;
  try {
    config = JSON.parse(await readFile(configPath, "utf8")) as TinyModelConfig;
  } catch (e) {
    throw new TinyAdapterError(
      `cannot read the tiny model config ${configPath}: ${(e as Error).message}. ` +
        "Pass weightsDir pointing at a folder made by pretrainTiny (config.json + tiny.safetensors).",
    );
  }
  if (
    typeof config?.transformer !== "object" ||
    !Array.isArray(config.vocabulary) ||
    !Number.isInteger(config.textTokens) ||
    !Number.isInteger(config.imageSize)
  ) {
    throw new TinyAdapterError(
      `${configPath}: expected { transformer, vocabulary, textTokens, imageSize } as written by pretrainTiny.`,
    );
  }
  tinyFluxConfig(config, configPath); // validates the transformer part early
  const file = join(dir, TINY_WEIGHTS_FILE);
  const checkpoint = await openSafetensors(file);
  const tensors: TinyWeights["tensors"] = new Map();
  for (const name of checkpoint.names()) {
    tensors.set(name, { shape: checkpoint.get(name).shape, data: await checkpoint.readFloat32(name) });
  }
  return { config, tensors };
}

/** Writes the config and the weights (each file atomically, weights first, so a reader never sees a new config with old weights). */
export async function writeTinyWeights(dir: string, weights: TinyWeights): Promise<void> {
  await writeSafetensors(
    join(dir, TINY_WEIGHTS_FILE),
    [...weights.tensors].map(
      ([name, t]) => [name, { dtype: "float32", shape: t.shape, data: t.data }] as const,
    ),
    { metadata: { format: "pt" } },
  );
  await writeFileAtomic(join(dir, TINY_CONFIG_FILE), `${JSON.stringify(weights.config, null, 2)}\n`);
}

/** The weights as a models WeightSource (values inline: the model is a few MB). */
export function tinyWeightSource(weights: TinyWeights, description = "tiny model weights"): WeightSource {
  return memoryWeightSource(
    new Map(
      [...weights.tensors].map(([k, t]) => [k, { dtype: "float32" as const, shape: t.shape, data: t.data }]),
    ),
    description,
  );
}
