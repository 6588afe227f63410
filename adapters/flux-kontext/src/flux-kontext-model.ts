import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type FlowScheduleConfig, flowScheduleConfigFromDiffusers } from "@edit-r1/core";
import { HubError, type ResolveOptions, resolveSafetensorsWeights, resolveSnapshotDir } from "@edit-r1/hub";
import {
  type AutoencoderKLConfig,
  type ClipTextConfig,
  type FluxTransformerConfig,
  fluxBflWeightSource,
  loadTextTokenizer,
  openSafetensorsWeights,
  parseAutoencoderKLConfig,
  parseClipTextConfig,
  parseFluxTransformerConfig,
  parseT5EncoderConfig,
  type T5EncoderConfig,
  type TextTokenizer,
  type WeightSource,
} from "@edit-r1/models";
import { FluxKontextError } from "./flux-kontext-error.js";

/** Everything a FLUX.1-Kontext pipeline folder holds, configs parsed and weights opened (not read). */
export interface FluxKontextModel {
  /** The folder the files were read from (a local folder or a Hub cache snapshot). */
  dir: string;
  /** "diffusers" when the transformer came from `transformer/`, "bfl" from a single BFL file. */
  transformerLayout: "diffusers" | "bfl";
  transformer: { config: FluxTransformerConfig; weights: WeightSource };
  vae: { config: AutoencoderKLConfig; weights: WeightSource };
  clip: { config: ClipTextConfig; weights: WeightSource; tokenizer: TextTokenizer };
  t5: { config: T5EncoderConfig; weights: WeightSource; tokenizer: TextTokenizer };
  scheduler: FlowScheduleConfig;
}

export interface OpenFluxKontextOptions extends ResolveOptions {
  /**
   * A single-file transformer checkpoint to use instead of `transformer/` (BFL's `flux1-kontext-dev.safetensors`,
   * or a diffusers-keyed file). Without it, a folder lacking `transformer/` weights falls back to a BFL file at
   * its root.
   */
  transformerFile?: string;
}

/** FLUX.1-Kontext-dev's transformer config, for a BFL file that comes without `transformer/config.json`. */
const KONTEXT_TRANSFORMER_DEFAULTS = { guidance_embeds: true };

/** Kontext's scheduler_config.json values, used when the folder has none. */
const KONTEXT_SCHEDULER = {
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
  base_shift: 0.5,
  max_shift: 1.15,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
  time_shift_type: "exponential",
};

const BFL_MARKER = "double_blocks.0.img_attn.qkv.weight";

/**
 * Opens a FLUX.1-Kontext pipeline: `model` is a local folder or a Hub repo id found in the local cache
 * (offline; nothing is downloaded — use `edit-r1`'s download or `huggingface-cli download` first). Reads the
 * diffusers layout (`transformer/`, `vae/`, `text_encoder/`, `text_encoder_2/`, `tokenizer/`, `tokenizer_2/`,
 * `scheduler/`), with the transformer optionally from a BFL single file.
 */
export async function openFluxKontextModel(
  model: string,
  options: OpenFluxKontextOptions = {},
): Promise<FluxKontextModel> {
  const dir = await resolveSnapshotDir(model, options);
  const index = await readJsonIfPresent(join(dir, "model_index.json"));
  const cls = index?._class_name;
  if (typeof cls === "string" && !cls.startsWith("Flux")) {
    throw new FluxKontextError(`${dir}/model_index.json names a ${cls}, not a FLUX (Kontext) pipeline`);
  }
  const weights = async (sub: string) => {
    const found = await resolveSafetensorsWeights(dir, sub, options);
    return openSafetensorsWeights(found.index ?? found.files[0]!);
  };
  const config = async (sub: string, file = "config.json") => {
    const path = join(dir, sub, file);
    const json = await readJsonIfPresent(path);
    if (!json) throw new FluxKontextError(`${path} is missing; the model folder is incomplete`);
    return { json, path };
  };

  const transformer = await openTransformer(dir, model, options);
  const vaeConfig = await config("vae");
  const clipConfig = await config("text_encoder");
  const t5Config = await config("text_encoder_2");
  const schedulerPath = join(dir, "scheduler", "scheduler_config.json");
  const schedulerJson = (await readJsonIfPresent(schedulerPath)) ?? KONTEXT_SCHEDULER;
  return {
    dir,
    ...transformer,
    vae: { config: parseAutoencoderKLConfig(vaeConfig.json, vaeConfig.path), weights: await weights("vae") },
    clip: {
      config: parseClipTextConfig(clipConfig.json, clipConfig.path),
      weights: await weights("text_encoder"),
      tokenizer: await loadTextTokenizer(join(dir, "tokenizer")),
    },
    t5: {
      config: parseT5EncoderConfig(t5Config.json, t5Config.path),
      weights: await weights("text_encoder_2"),
      tokenizer: await loadTextTokenizer(join(dir, "tokenizer_2")),
    },
    scheduler: flowScheduleConfigFromDiffusers(schedulerJson),
  };
}

async function openTransformer(
  dir: string,
  model: string,
  options: OpenFluxKontextOptions,
): Promise<Pick<FluxKontextModel, "transformer" | "transformerLayout">> {
  const configPath = join(dir, "transformer", "config.json");
  const json = (await readJsonIfPresent(configPath)) ?? KONTEXT_TRANSFORMER_DEFAULTS;
  const config = parseFluxTransformerConfig(json, configPath);
  let file = options.transformerFile;
  if (file === undefined) {
    try {
      const found = await resolveSafetensorsWeights(dir, "transformer", options);
      return {
        transformerLayout: "diffusers",
        transformer: { config, weights: await openSafetensorsWeights(found.index ?? found.files[0]!) },
      };
    } catch (e) {
      // No weights under transformer/ (a missing shard is another error and propagates): try a BFL file.
      if (!(e instanceof HubError && e.code === "not-found")) throw e;
      file = await findBflFile(dir, model);
    }
  }
  const source = await openSafetensorsWeights(file);
  if (source.get(BFL_MARKER) === undefined) {
    return { transformerLayout: "diffusers", transformer: { config, weights: source } };
  }
  return { transformerLayout: "bfl", transformer: { config, weights: fluxBflWeightSource(source) } };
}

/** The one root-level `*.safetensors` holding BFL transformer keys (`flux1-kontext-dev.safetensors`). */
async function findBflFile(dir: string, model: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".safetensors")).sort();
  const preferred = names.find((n) => n.startsWith("flux1-")) ?? (names.length === 1 ? names[0] : undefined);
  if (!preferred) {
    throw new FluxKontextError(
      `${model}: no transformer/ folder and no single root-level FLUX checkpoint (found ${names.length === 0 ? "no .safetensors" : names.join(", ")}); ` +
        "download transformer/ or pass transformerFile",
    );
  }
  return join(dir, preferred);
}

async function readJsonIfPresent(path: string): Promise<Record<string, unknown> | undefined> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new FluxKontextError(`${path} is not valid JSON (${(e as Error).message}); re-download it`);
  }
}
