import { type Adapter, ConfigError, INTERFACE_VERSION } from "@edit-r1/core";
import { EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import { loadFluxKontext } from "./flux-kontext-editor.js";
import { loadFluxKontextPolicy } from "./flux-kontext-policy.js";
import { PREFERRED_KONTEXT_RESOLUTIONS } from "./kontext-resolution.js";

/** The Hub repository loaded when no --model is given. */
export const FLUX_KONTEXT_REPO = "black-forest-labs/FLUX.1-Kontext-dev";

/** FLUX.1-Kontext-dev as a core Adapter: what `edit-r1 edit|bench|train --adapter flux-kontext` loads. */
export const adapter: Adapter = {
  name: "flux-kontext",
  interfaceVersion: INTERFACE_VERSION,
  capabilities: {
    guidance: "distilled",
    resolutions: PREFERRED_KONTEXT_RESOLUTIONS.map((r) => [r[0], r[1]] as const),
    loraTargets: EDIT_R1_LORA_TARGETS,
    weightDtypes: ["bfloat16", "float16", "float32"],
    devices: ["cpu", "cuda"],
    trainable: true,
  },
  loadEditor: (options = {}) =>
    loadFluxKontext({
      model: options.model ?? FLUX_KONTEXT_REPO,
      device: options.device,
      lora: options.lora,
      loraScale: options.loraScale,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.steps !== undefined ? { steps: options.steps } : {}),
    }),
  loadPolicy: async (options = {}) => {
    // A scaled LoRA is an editing notion; training continues from the factors as stored.
    if (options.loraScale !== undefined && options.loraScale !== 1)
      throw new ConfigError(
        `flux-kontext: --lora-scale ${options.loraScale} cannot be used for training; training starts from the ` +
          "LoRA's factors as stored (drop --lora-scale, or rescale the LoRA's lora_B first)",
      );
    return loadFluxKontextPolicy({
      model: options.model ?? FLUX_KONTEXT_REPO,
      ...(options.device ? { device: options.device } : {}),
      ...(options.lora ? { initialLora: options.lora } : {}),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.steps !== undefined ? { steps: options.steps } : {}),
    });
  },
  trainDefaults: {
    // Edit-R1's Kontext run (reference/algorithm.md §2.3) rolls out 24 prompts × K = 12 per epoch on 24 GPUs,
    // 3 samples per GPU batch, one optimizer step per epoch. One process keeps K = 12 (the group statistics
    // depend on it) and the micro-batch of 3, and draws 2 × 2 = 4 prompts (48 rollouts) per step. The Kontext
    // config trains every group (ban_prompt False), so the low-variance filter is off.
    config: {
      steps: 100,
      promptsPerBatch: 2,
      groupSize: 12,
      rolloutBatches: 2,
      trainBatchSize: 3,
      filter: { enabled: false, banPrompts: false },
      checkpointEvery: 10,
      sampleGridEvery: 10,
    },
    // The Qwen2.5-VL judge over the OpenAI-compatible API: URL and model from EDIT_R1_JUDGE_URL / _MODEL.
    reward: "mllm",
    sampler: "dpm2",
    benchmark: "imgedit",
  },
};
