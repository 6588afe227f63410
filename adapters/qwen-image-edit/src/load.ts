import { writeFile } from "node:fs/promises";
import { type LoraFile, readLora } from "@edit-r1/adapter-kit";
import { decodeImage, type EditRequest, encodePng, type RgbImage } from "@edit-r1/core";
import type { Device } from "@edit-r1/engine";
import type { ResolveOptions } from "@edit-r1/hub";
import type { ComputeDType } from "@edit-r1/models";
import {
  QWEN_EDIT_BENCHMARK_SETTINGS,
  QWEN_EDIT_PIPELINE_SETTINGS,
  QWEN_EDIT_ROLLOUT_SETTINGS,
  QwenImageEditEditor,
  type QwenImageEditSettings,
} from "./qwen-image-edit-editor.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import { openQwenImageEditModel, type QwenImageEditModel } from "./qwen-image-edit-model.js";
import { QwenPromptEncoder } from "./qwen-prompt-encoder.js";

export interface LoadQwenImageEditOptions extends ResolveOptions, Partial<QwenImageEditSettings> {
  /** A local pipeline folder or a Hub repo id in the local cache (e.g. "Qwen/Qwen-Image-Edit-2509"). */
  model: string;
  /** Where sessions run: "cpu" (default) or "cuda". */
  device?: Device;
  /** Compute dtype of the transformer and the VLM (default float32; the VAE stays float32). */
  dtype?: ComputeDType;
  /** A PEFT/diffusers LoRA: a .safetensors file, an adapter folder, or one already loaded. */
  lora?: string | LoraFile;
  /** The LoRA's lora_alpha when its files give none (a PEFT folder without adapter_config.json). */
  loraAlpha?: number;
  /** Multiplies the LoRA's alpha/rank (default 1; 0 turns the LoRA off). */
  loraScale?: number;
  /**
   * Start from these settings, then apply the individual options: "benchmark" (default; UniWorld-V2's
   * evaluation: 28 steps, true CFG 4), "pipeline" (diffusers' defaults: 50 steps) or "rollout" (Edit-R1's).
   */
  preset?: "benchmark" | "pipeline" | "rollout";
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /**
   * Heads per attention chunk in the transformer: one chunk's scores are alive at once instead of every head's
   * (the memory peak of a high-resolution edit). Same images; default all heads at once.
   */
  attentionHeadChunk?: number;
}

const PRESETS = {
  benchmark: QWEN_EDIT_BENCHMARK_SETTINGS,
  pipeline: QWEN_EDIT_PIPELINE_SETTINGS,
  rollout: QWEN_EDIT_ROLLOUT_SETTINGS,
} as const;

const SETTING_KEYS = [
  "steps",
  "trueCfgScale",
  "negativePrompt",
  "sampler",
  "seed",
  "outputSize",
  "textBucket",
  "outputArea",
  "vaeImageArea",
  "conditionImageArea",
] as const satisfies readonly (keyof QwenImageEditSettings)[];

/** The preset's settings with each given option applied. */
export function qwenImageEditSettings(
  options: Partial<QwenImageEditSettings> & { preset?: keyof typeof PRESETS },
) {
  const settings: QwenImageEditSettings = { ...PRESETS[options.preset ?? "benchmark"] };
  for (const k of SETTING_KEYS) {
    if (options[k] !== undefined) (settings as unknown as Record<string, unknown>)[k] = options[k];
  }
  return settings;
}

/** An editor over an opened model, with its Qwen2.5-VL prompt encoder; checks the weights against the configs. */
export function editorOf(
  model: QwenImageEditModel,
  settings: QwenImageEditSettings,
  options: {
    device?: Device | undefined;
    dtype?: ComputeDType | undefined;
    threads?: number | undefined;
    lora?: LoraFile | undefined;
    loraScale?: number | undefined;
    attentionHeadChunk?: number | undefined;
  } = {},
): QwenImageEditEditor {
  if (!model.textEncoder) throw new QwenImageEditError(`${model.dir}: the pipeline has no text encoder`);
  const prompts = new QwenPromptEncoder(model.textEncoder, model.variant, {
    dtype: options.dtype,
    device: options.device,
    threads: options.threads,
    jointAttentionDim: model.transformer.config.jointAttentionDim,
  });
  const editor = new QwenImageEditEditor(model, settings, { ...options, prompts });
  editor.checkWeights();
  return editor;
}

/**
 * Opens a Qwen-Image-Edit pipeline (v1, 2509 or 2511; local folder or cached Hub repo) and returns an Editor.
 * Settings start from a preset (the benchmark protocol by default) and each option overrides one.
 */
export async function loadQwenImageEdit(options: LoadQwenImageEditOptions): Promise<QwenImageEditEditor> {
  const settings = qwenImageEditSettings(options);
  const scale = options.loraScale ?? 1;
  if (!Number.isFinite(scale) || scale < 0)
    throw new QwenImageEditError(`loraScale must be ≥ 0, got ${scale}`);
  const model = await openQwenImageEditModel(options.model, options);
  const lora =
    typeof options.lora === "string"
      ? await readLora(options.lora, {
          ...(options.loraAlpha !== undefined ? { alpha: options.loraAlpha } : {}),
        })
      : options.lora;
  return editorOf(model, settings, {
    device: options.device,
    dtype: options.dtype,
    threads: options.threads,
    // A zero scale is the base model: drop the LoRA rather than multiply it by 0 on every call.
    lora: scale === 0 ? undefined : lora,
    loraScale: scale,
    attentionHeadChunk: options.attentionHeadChunk,
  });
}

export interface EditImageOptions extends LoadQwenImageEditOptions {
  /** The source image(s): paths or encoded bytes (PNG, JPEG, WebP…); several for 2509/2511. */
  images: readonly (string | Uint8Array)[];
  instruction: string;
  /** Where to write the edited image as PNG. */
  out?: string;
}

/** One edit end to end: load, edit, write, close. */
export async function editImage(options: EditImageOptions): Promise<RgbImage> {
  const sources: RgbImage[] = [];
  for (const image of options.images) {
    try {
      sources.push(await decodeImage(image));
    } catch (e) {
      const what = typeof image === "string" ? image : `${image.length} bytes`;
      throw new QwenImageEditError(
        `cannot decode the source image ${what}: ${(e as Error).message}; pass a PNG, JPEG or WebP file`,
      );
    }
  }
  const editor = await loadQwenImageEdit(options);
  try {
    const request: EditRequest = {
      key: "edit",
      instruction: options.instruction,
      source: sources[0]!,
      ...(sources.length > 1 ? { sources } : {}),
    };
    const [edited] = await editor.edit([request]);
    if (options.out) await writeFile(options.out, await encodePng(edited!));
    return edited!;
  } finally {
    await editor.close();
  }
}
