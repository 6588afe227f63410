import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type FlowScheduleConfig, flowScheduleConfigFromDiffusers } from "@edit-r1/core";
import { type ResolveOptions, resolveSafetensorsWeights, resolveSnapshotDir } from "@edit-r1/hub";
import {
  type AutoencoderKLQwenImageConfig,
  loadTextTokenizer,
  openSafetensorsWeights,
  parseAutoencoderKLQwenImageConfig,
  parseQwen2VLProcessorConfig,
  parseQwen25VLConfig,
  parseQwenImageTransformerConfig,
  type Qwen2VLProcessorConfig,
  type Qwen25VLConfig,
  type QwenImageTransformerConfig,
  type TextTokenizer,
  type WeightSource,
} from "@edit-r1/models";
import { QwenImageEditError } from "./qwen-image-edit-error.js";

/** Which pipeline a checkpoint is made for: QwenImageEditPipeline (v1) or QwenImageEditPlusPipeline (2509, 2511). */
export type QwenImageEditVariant = "edit" | "edit-plus";

/** The Qwen2.5-VL that encodes instruction and source images, with its tokenizer and image processor. */
export interface QwenTextEncoder {
  config: Qwen25VLConfig;
  weights: WeightSource;
  tokenizer: TextTokenizer;
  processor: Qwen2VLProcessorConfig;
}

/** Everything a Qwen-Image-Edit pipeline folder holds, configs parsed and weights opened (not read). */
export interface QwenImageEditModel {
  /** The folder the files were read from (a local folder or a Hub cache snapshot). */
  dir: string;
  variant: QwenImageEditVariant;
  transformer: { config: QwenImageTransformerConfig; weights: WeightSource };
  vae: { config: AutoencoderKLQwenImageConfig; weights: WeightSource };
  /** Absent only for a pipeline assembled from components without one, which is then given prompt embeddings. */
  textEncoder?: QwenTextEncoder | undefined;
  scheduler: FlowScheduleConfig;
}

const PIPELINE_CLASSES: Record<string, QwenImageEditVariant> = {
  QwenImageEditPipeline: "edit",
  QwenImageEditPlusPipeline: "edit-plus",
};

/**
 * Opens a Qwen-Image-Edit pipeline (Qwen/Qwen-Image-Edit, -2509, -2511, or a replica in their layout): `model`
 * is a local folder or a Hub repo id found in the local cache (offline; nothing is downloaded — run
 * `edit-r1 download --adapter qwen-image-edit` first). The variant comes from model_index.json's `_class_name`.
 * Reads `transformer/`, `vae/`, `text_encoder/` (Qwen2.5-VL), `processor/` (tokenizer.json and the image
 * processor's config; `tokenizer/` is the fallback tokenizer folder) and `scheduler/`.
 */
export async function openQwenImageEditModel(
  model: string,
  options: ResolveOptions = {},
): Promise<QwenImageEditModel> {
  const dir = await resolveSnapshotDir(model, options);
  const indexPath = join(dir, "model_index.json");
  const index = await readJson(indexPath);
  if (!index) {
    throw new QwenImageEditError(
      `${model}: ${indexPath} is missing; point --model at a Qwen-Image-Edit pipeline folder (model_index.json, ` +
        "transformer/, vae/, text_encoder/, processor/, scheduler/) or download one",
    );
  }
  const cls = String(index._class_name);
  const variant = PIPELINE_CLASSES[cls];
  if (!variant) {
    throw new QwenImageEditError(
      `${indexPath} names a ${cls}, not a Qwen-Image-Edit pipeline (${Object.keys(PIPELINE_CLASSES).join(" or ")})`,
    );
  }
  const weights = async (sub: string) => {
    const found = await resolveSafetensorsWeights(dir, sub, options);
    return openSafetensorsWeights(found.index ?? found.files[0]!);
  };
  const config = async (sub: string, file = "config.json") => {
    const path = join(dir, sub, file);
    const json = await readJson(path);
    if (!json) throw new QwenImageEditError(`${path} is missing; the model folder is incomplete`);
    return { json, path };
  };
  const transformerConfig = await config("transformer");
  const vaeConfig = await config("vae");
  const textConfig = await config("text_encoder");
  const processorConfig = await config("processor", "preprocessor_config.json");
  const scheduler = await config("scheduler", "scheduler_config.json");
  return {
    dir,
    variant,
    transformer: {
      config: parseQwenImageTransformerConfig(transformerConfig.json, transformerConfig.path),
      weights: await weights("transformer"),
    },
    vae: {
      config: parseAutoencoderKLQwenImageConfig(vaeConfig.json, vaeConfig.path),
      weights: await weights("vae"),
    },
    textEncoder: {
      config: parseQwen25VLConfig(textConfig.json, textConfig.path),
      weights: await weights("text_encoder"),
      tokenizer: await loadTokenizer(dir),
      processor: parseQwen2VLProcessorConfig(processorConfig.json, processorConfig.path),
    },
    scheduler: flowScheduleConfigFromDiffusers(scheduler.json),
  };
}

/** processor/ ships tokenizer.json (what @huggingface/tokenizers reads); tokenizer/ has only vocab and merges. */
async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  return loadTextTokenizer(join(dir, "processor"));
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new QwenImageEditError(`${path} is not valid JSON (${(e as Error).message}); re-download it`);
  }
}
