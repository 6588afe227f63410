import { policyTrainingOptions } from "@edit-r1/adapter-kit";
import type { Adapter, AdapterLoadOptions } from "@edit-r1/core";
import { INTERFACE_VERSION } from "@edit-r1/core";
import { type ComputeDType, EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import { type LoadFluxKontextOptions, loadFluxKontext } from "./flux-kontext-editor.js";
import { planFluxKontextPolicy } from "./flux-kontext-plan.js";
import { type LoadFluxKontextPolicyOptions, loadFluxKontextPolicy } from "./flux-kontext-policy.js";
import { PREFERRED_KONTEXT_RESOLUTIONS } from "./kontext-resolution.js";
import { writeFluxKontextReplica } from "./replica.js";

/** The Hub repository loaded when no --model is given. */
export const FLUX_KONTEXT_REPO = "black-forest-labs/FLUX.1-Kontext-dev";

/** Settings of the FLUX-Kontext adapter beyond core's load options (tests and small replicas use them). */
export interface FluxKontextAdapterSettings {
  /** T5 tokens of both the editor and the policy (default: the editor's 512 and Edit-R1's 128 for training). */
  maxSequenceLength?: number;
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /** The training LoRA when no loraConfig is given (default r 32, α 64 on the Edit-R1 targets). */
  lora?: { rank?: number; alpha?: number };
  /** The rollout bucket when no resolution is given (default 512×512). */
  resolution?: { width: number; height: number };
  /** The output sizes it declares (default: Edit-R1's 512×512 training size and the preferred Kontext resolutions). */
  resolutions?: readonly (readonly [number, number])[];
}

/**
 * FLUX.1-Kontext-dev as a core Adapter: what `edit-r1 edit|bench|train --adapter flux-kontext` loads.
 * `createFluxKontextAdapter(settings)` gives the same adapter with other defaults (e.g. for a tiny replica).
 */
export function createFluxKontextAdapter(settings: FluxKontextAdapterSettings = {}): Adapter {
  /** What the editor and the policy take alike: the model, session settings, steps and guidance. */
  const shared = (o: AdapterLoadOptions) => ({
    model: o.model ?? FLUX_KONTEXT_REPO,
    ...(settings.threads !== undefined ? { threads: settings.threads } : {}),
    ...(settings.maxSequenceLength !== undefined ? { maxSequenceLength: settings.maxSequenceLength } : {}),
    ...(o.device ? { device: o.device } : {}),
    // checkAdapter admits only the declared dtypes (float32, float16, bfloat16).
    ...(o.dtype ? { dtype: o.dtype as ComputeDType } : {}),
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
    ...(o.guidance !== undefined ? { guidance: o.guidance } : {}),
  });
  return {
    name: "flux-kontext",
    interfaceVersion: INTERFACE_VERSION,
    capabilities: {
      guidance: "distilled",
      // Edit-R1 trains at 512×512 (the policy's default bucket), so `--resolution 512x512` must be accepted
      // besides Kontext's preferred (~1 MP) editing sizes.
      resolutions: settings.resolutions ?? [
        [512, 512] as const,
        ...PREFERRED_KONTEXT_RESOLUTIONS.map((r) => [r[0], r[1]] as const),
      ],
      maxSourceImages: 1,
      loraTargets: EDIT_R1_LORA_TARGETS,
      dtypes: ["float32", "float16", "bfloat16"],
      devices: ["cpu", "cuda", "webgpu"],
      trainable: true,
      recompute: true,
      attentionHeadChunk: true,
    },
    cli: {
      description: "FLUX.1-Kontext-dev (12B, distilled guidance), diffusers or BFL transformer layout",
      defaultRepo: FLUX_KONTEXT_REPO,
      downloadPatterns: [
        "model_index.json",
        "transformer/*",
        "vae/*",
        "text_encoder/*",
        "text_encoder_2/*",
        "tokenizer/*",
        "tokenizer_2/*",
        "scheduler/*",
      ],
      // A tiny random FLUX.1-Kontext-dev in the same diffusers layout (`edit-r1 replica --adapter flux-kontext`).
      writeReplica: (dir, options) => writeFluxKontextReplica(dir, { seed: options.seed ?? 0 }),
      // The full-size graphs from the shipped tensor shapes (`edit-r1 plan` without --model).
      loadShapePolicy: (options = {}) =>
        planFluxKontextPolicy({
          ...policyTrainingOptions(options, settings),
          ...(options.dtype ? { dtype: options.dtype as ComputeDType } : {}),
          ...(options.steps !== undefined ? { steps: options.steps } : {}),
          ...(options.guidance !== undefined ? { guidance: options.guidance } : {}),
          ...(options.recompute ? { recompute: true } : {}),
        }),
    },
    loadEditor: (options = {}) => {
      const resolution = options.resolution;
      const editOptions: LoadFluxKontextOptions = {
        ...shared(options),
        ...(options.lora ? { lora: options.lora } : {}),
        ...(options.loraAlpha !== undefined ? { loraAlpha: options.loraAlpha } : {}),
        ...(options.loraScale !== undefined ? { loraScale: options.loraScale } : {}),
        ...(options.noiseSeed !== undefined ? { seed: options.noiseSeed } : {}),
        ...(options.attentionHeadChunk !== undefined
          ? { attentionHeadChunk: options.attentionHeadChunk }
          : {}),
        // A fixed size is both the output and the size the source is resized to, as in Edit-R1's rollouts.
        ...(resolution
          ? {
              outputSize: { width: resolution[0], height: resolution[1] },
              resolutions: [[resolution[0], resolution[1]]],
            }
          : {}),
      };
      return loadFluxKontext(editOptions);
    },
    loadPolicy: (options = {}) => {
      const policyOptions: LoadFluxKontextPolicyOptions = {
        ...shared(options),
        ...policyTrainingOptions(options, settings),
        ...(options.recompute ? { recompute: true } : {}),
      };
      return loadFluxKontextPolicy(policyOptions);
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
}

export const adapter: Adapter = createFluxKontextAdapter();
