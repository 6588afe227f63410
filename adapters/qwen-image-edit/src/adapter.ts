import { policyTrainingOptions } from "@edit-r1/adapter-kit";
import type { Adapter, AdapterLoadOptions } from "@edit-r1/core";
import { INTERFACE_VERSION } from "@edit-r1/core";
import { type ComputeDType, EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import type { QwenImageEditAreas } from "./image-sizes.js";
import { type LoadQwenImageEditOptions, loadQwenImageEdit } from "./load.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import { planQwenImageEditPolicy } from "./qwen-image-edit-plan.js";
import { type LoadQwenImageEditPolicyOptions, loadQwenImageEditPolicy } from "./qwen-image-edit-policy.js";
import { writeQwenImageEditReplica } from "./replica.js";

/** The Hub repository loaded when no --model is given: the paper's base model. */
export const QWEN_IMAGE_EDIT_REPO = "Qwen/Qwen-Image-Edit-2509";

/** Settings of the Qwen-Image-Edit adapter beyond core's load options (tests and small replicas use them). */
export interface QwenImageEditAdapterSettings {
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /** The training LoRA when no loraConfig is given (default r 32, α 64 on the Edit-R1 targets). */
  lora?: { rank?: number; alpha?: number };
  /** The rollout bucket when no resolution is given (default 512×512). */
  resolution?: { width: number; height: number };
  /**
   * Image areas for editing and training (defaults: the pipeline's 1024² output and VAE images and 384² VLM
   * images for editing; 512² VAE images for training). Tiny replicas use tiny ones.
   */
  areas?: Partial<QwenImageEditAreas>;
  /** Training: text-condition rows per sample (default 256). */
  maxTextTokens?: number;
  /** Editing: text rows are padded to a multiple of this (default 64). */
  textBucket?: number;
}

/**
 * Qwen-Image-Edit (v1, 2509, 2511; the variant comes from the checkpoint's model_index.json) as a core Adapter:
 * what `edit-r1 edit|bench|train --adapter qwen-image-edit` loads.
 */
export function createQwenImageEditAdapter(settings: QwenImageEditAdapterSettings = {}): Adapter {
  const shared = (o: AdapterLoadOptions) => ({
    model: o.model ?? QWEN_IMAGE_EDIT_REPO,
    ...(settings.threads !== undefined ? { threads: settings.threads } : {}),
    ...(o.device ? { device: o.device } : {}),
    // checkAdapter admits only the declared dtypes (float32, float16, bfloat16).
    ...(o.dtype ? { dtype: o.dtype as ComputeDType } : {}),
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
  });
  return {
    name: "qwen-image-edit",
    interfaceVersion: INTERFACE_VERSION,
    capabilities: {
      guidance: "cfg",
      // Any size: diffusers resizes sources to the output area itself (sides multiples of 16 for training).
      resolutions: "any",
      // QwenImageEditPlusPipeline (2509, 2511) takes several images; v1 one (the editor refuses more).
      maxSourceImages: 3,
      loraTargets: EDIT_R1_LORA_TARGETS,
      dtypes: ["float32", "float16", "bfloat16"],
      devices: ["cpu", "cuda", "webgpu"],
      trainable: true,
      recompute: true,
      attentionHeadChunk: true,
    },
    cli: {
      description: "Qwen-Image-Edit v1 / 2509 / 2511 (20B MMDiT, Qwen2.5-VL-7B encoder, true CFG)",
      defaultRepo: QWEN_IMAGE_EDIT_REPO,
      downloadPatterns: [
        "model_index.json",
        "transformer/*",
        "vae/*",
        "text_encoder/*",
        "processor/*",
        "tokenizer/*",
        "scheduler/*",
      ],
      // A tiny random Qwen-Image-Edit-2509 (the default repo's layout): `edit-r1 replica --adapter qwen-image-edit`.
      writeReplica: (dir, o) => writeQwenImageEditReplica(dir, { variant: "edit-plus", seed: o.seed ?? 0 }),
      // The full-size graphs from the shipped tensor shapes (`edit-r1 plan` without --model).
      loadShapePolicy: (options = {}) =>
        planQwenImageEditPolicy({
          ...policyTrainingOptions(options, settings),
          ...(options.dtype ? { dtype: options.dtype as ComputeDType } : {}),
          ...(options.steps !== undefined ? { steps: options.steps } : {}),
          ...(settings.areas?.vaeImageArea !== undefined
            ? { vaeImageArea: settings.areas.vaeImageArea }
            : {}),
          ...(settings.maxTextTokens !== undefined ? { maxTextTokens: settings.maxTextTokens } : {}),
          ...(options.recompute ? { recompute: true } : {}),
        }),
    },
    loadEditor: (options = {}) => {
      const resolution = options.resolution;
      const editOptions: LoadQwenImageEditOptions = {
        ...shared(options),
        ...settings.areas,
        ...(settings.textBucket !== undefined ? { textBucket: settings.textBucket } : {}),
        ...(options.guidance !== undefined ? { trueCfgScale: options.guidance } : {}),
        ...(options.lora ? { lora: options.lora } : {}),
        ...(options.loraAlpha !== undefined ? { loraAlpha: options.loraAlpha } : {}),
        ...(options.loraScale !== undefined ? { loraScale: options.loraScale } : {}),
        ...(options.noiseSeed !== undefined ? { seed: options.noiseSeed } : {}),
        ...(options.attentionHeadChunk !== undefined
          ? { attentionHeadChunk: options.attentionHeadChunk }
          : {}),
        // A fixed size is the output and the area sources are resized to for the VAE (and, in v1, for the VLM),
        // as Edit-R1's rollouts do at 512². calculate_dimensions rounds sides to multiples of 32, so the area is
        // at least 32² (a 16×16 output still VAE-encodes its source at 32×32).
        ...(resolution
          ? {
              outputSize: { width: resolution[0], height: resolution[1] },
              outputArea: Math.max(resolution[0] * resolution[1], 32 * 32),
              vaeImageArea: Math.max(resolution[0] * resolution[1], 32 * 32),
            }
          : {}),
      };
      return loadQwenImageEdit(editOptions);
    },
    loadPolicy: (options = {}) => {
      if (options.guidance !== undefined && options.guidance > 1) {
        // Edit-R1 rolls out without CFG (DiffusionNFT is CFG-free); the policy has no negative branch.
        throw new QwenImageEditError(
          `qwen-image-edit trains without true CFG (Edit-R1's rollouts use true_cfg_scale 1); got guidance ${options.guidance}`,
        );
      }
      const policyOptions: LoadQwenImageEditPolicyOptions = {
        ...shared(options),
        ...policyTrainingOptions(options, settings),
        ...(settings.areas?.vaeImageArea !== undefined ? { vaeImageArea: settings.areas.vaeImageArea } : {}),
        ...(settings.areas?.conditionImageArea !== undefined
          ? { conditionImageArea: settings.areas.conditionImageArea }
          : {}),
        ...(settings.maxTextTokens !== undefined ? { maxTextTokens: settings.maxTextTokens } : {}),
        ...(options.recompute ? { recompute: true } : {}),
      };
      return loadQwenImageEditPolicy(policyOptions);
    },
    trainDefaults: {
      // Edit-R1's Qwen-2509 run (reference/algorithm.md §2.3) rolls out 24 prompts × K = 12 per epoch on 48 GPUs,
      // 3 samples per GPU batch, one optimizer step per epoch. One process keeps K = 12 and the micro-batch of 3,
      // and draws 2 × 2 = 4 prompts (48 rollouts) per step. The Qwen config bans low-variance prompts
      // (qwen_mllm_reward: ban_prompt True), so the filter is on.
      config: {
        steps: 100,
        promptsPerBatch: 2,
        groupSize: 12,
        rolloutBatches: 2,
        trainBatchSize: 3,
        filter: { enabled: true, banPrompts: true },
        checkpointEvery: 10,
        sampleGridEvery: 10,
      },
      reward: "mllm",
      sampler: "dpm2",
      benchmark: "imgedit",
    },
  };
}

export const adapter: Adapter = createQwenImageEditAdapter();
