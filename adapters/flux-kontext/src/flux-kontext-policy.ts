import {
  createGraphPolicy,
  type GraphBucket,
  type GraphPolicy,
  graphPolicyOptions,
  type PolicyTrainingOptions,
  type TransformerGraphOptions,
  transformerGraphOptions,
} from "@edit-r1/adapter-kit";
import { type EditRequest, type FlowScheduleConfig, flowMatchSchedule } from "@edit-r1/core";
import type { Graph } from "@edit-r1/engine";
import { buildKontextVelocity, type ComputeDType } from "@edit-r1/models";
import {
  FluxKontextEditor,
  type FluxKontextSettings,
  KONTEXT_ROLLOUT_SETTINGS,
} from "./flux-kontext-editor.js";
import { FluxKontextError } from "./flux-kontext-error.js";
import {
  type FluxKontextModel,
  type OpenFluxKontextOptions,
  openFluxKontextModel,
} from "./flux-kontext-model.js";

/** The LoRA θ the policy trains (PEFT names, one rank and alpha for every module). */
export interface FluxKontextLoraSettings {
  /** Default 32 (Edit-R1). */
  rank?: number;
  /** PEFT lora_alpha; the update is scaled by alpha / rank. Default 64 (Edit-R1). */
  alpha?: number;
  /** PEFT target_modules. Default: Edit-R1's attention projections (EDIT_R1_LORA_TARGETS). */
  targets?: readonly string[];
}

/** The model and rollout protocol; the LoRA, seeds and sessions are the kit's PolicyTrainingOptions. */
export interface LoadFluxKontextPolicyOptions extends OpenFluxKontextOptions, PolicyTrainingOptions {
  /** A local pipeline folder or a Hub repo id in the local cache. */
  model: string;
  /** Compute dtype of the transformer (default float32; the VAE and text encoders stay float32). */
  dtype?: ComputeDType;
  /**
   * The resolution bucket every rollout is made at (default 512×512, as Edit-R1); sources of another size are
   * resized to it. Both sides must be multiples of 16 (the VAE's 8 × the 2×2 packing) for the real model.
   */
  resolution?: { width: number; height: number };
  /** Rollout steps (default 6); the schedule is linspace(1, 1/steps, steps), dynamically shifted, then 0. */
  steps?: number;
  /** Distilled guidance in rollouts and in all three training forwards (default 2.5). */
  guidance?: number;
  /** T5 tokens (default 128, as Edit-R1 trains). */
  maxSequenceLength?: number;
  /** Cut instructions longer than maxSequenceLength (default true, as diffusers does in Edit-R1's rollouts). */
  truncateInstructions?: boolean;
  /** The trainable LoRA. Ignored when `initialLora` is given (its rank, alpha and modules are used). */
  lora?: FluxKontextLoraSettings;
  /**
   * Gradient checkpointing per transformer block in the fused training graph: each double and single block's
   * interior is recomputed in the backward pass, so only the blocks' outputs stay alive (the same regions
   * `edit-r1 plan --recompute` plans). The loss and gradients are the same as without.
   */
  recompute?: boolean;
}

/** FLUX.1-Kontext as a TrainablePolicy, with the base editor that encodes its conditions and decodes its latents. */
export interface FluxKontextPolicy extends GraphPolicy {
  readonly editor: FluxKontextEditor;
  /** The rollout bucket [width, height]. */
  readonly resolution: { width: number; height: number };
}

/**
 * Opens a FLUX.1-Kontext pipeline as a TrainablePolicy with Edit-R1's rollout protocol (512×512, 6 steps,
 * guidance 2.5, 128 T5 tokens), each option overriding one setting. Built on the shared adapter half: θ is a
 * LoRA on the transformer (PEFT init, B = 0, so training starts at the base model); per sample the conditions
 * are the context-image tokens (the source resized to the bucket, VAE-encoded, (z − shift)·scale, packed), the
 * T5 sequence and CLIP's pooled vector; the distilled guidance is a constant of the graphs. Conditioning and
 * decoding go through a base-model FluxKontextEditor, so they are exactly the editor's.
 */
export async function loadFluxKontextPolicy(
  options: LoadFluxKontextPolicyOptions,
): Promise<FluxKontextPolicy> {
  const r = KONTEXT_ROLLOUT_SETTINGS;
  const resolution = options.resolution ?? (r.outputSize as { width: number; height: number });
  const settings: FluxKontextSettings = {
    ...r,
    steps: options.steps ?? r.steps,
    guidance: options.guidance ?? r.guidance,
    maxSequenceLength: options.maxSequenceLength ?? r.maxSequenceLength,
    outputSize: { width: resolution.width, height: resolution.height },
    resolutions: [[resolution.width, resolution.height]],
  };
  const model = await openFluxKontextModel(options.model, options);
  const { transformer, vae } = model;
  const config = transformer.config;
  const vaeFactor = 2 ** (vae.config.blockOutChannels.length - 1);
  const multiple = 2 * vaeFactor;
  const { width, height } = resolution;
  if (![width, height].every((d) => Number.isInteger(d) && d > 0 && d % multiple === 0))
    throw new FluxKontextError(
      `resolution ${width}×${height}: both sides must be positive multiples of ${multiple} ` +
        `(the VAE's factor ${vaeFactor} times the 2×2 token packing), e.g. 512×512`,
    );
  const packed = vae.config.latentChannels * 4;
  if (config.inChannels !== packed)
    throw new FluxKontextError(
      `the transformer takes ${config.inChannels} channels per token but the VAE's ${vae.config.latentChannels} ` +
        `latent channels pack to ${packed}; the transformer and VAE are from different models`,
    );
  const editor = new FluxKontextEditor(model, settings, {
    device: options.device,
    dtype: options.dtype,
    truncateInstructions: options.truncateInstructions ?? true,
    threads: options.threads,
  });
  try {
    editor.checkWeights();
    // Checkpointing is per block inside the velocity graph, not one region around the whole of v_θ.
    const policyOptions = await graphPolicyOptions({ ...options, recompute: false });
    const bucketOptions: KontextBucketOptions = {
      dtype: options.dtype,
      ...(options.recompute ? { recompute: true } : {}),
      attentionHeadChunk: options.attentionHeadChunk,
    };

    const bucketOf = (grid: readonly [number, number], textTokens: number): GraphBucket =>
      kontextBucket(transformer, model.scheduler, settings, grid, textTokens, bucketOptions);
    const grid = [height / vaeFactor, width / vaeFactor] as const;
    const bucketKey = `${width}x${height}`;
    const policy = createGraphPolicy(
      {
        name: "flux-kontext",
        baseModel: "black-forest-labs/FLUX.1-Kontext-dev",
        // One bucket: every source is resized to the rollout resolution.
        bucketKey: () => bucketKey,
        bucket: () => bucketOf(grid, settings.maxSequenceLength),
        // The smallest build that creates every LoRA factor: one 2×2 grid, one text token.
        probeBucket: () => bucketOf([2, 2], 1),
        encode: async (request: EditRequest) => {
          const text = await editor.encodeInstruction(request.instruction);
          const context = await editor.encodeSource(request.source, resolution);
          return { context: context.packed, text: text.hidden, pooled: text.pooled };
        },
        decode: (x0) => editor.decodeLatents(x0, resolution),
        dispose: () => editor.close(),
      },
      policyOptions,
    );
    return Object.assign(policy, { editor, resolution: { width, height } });
  } catch (e) {
    await editor.close();
    throw e;
  }
}

/** What a Kontext bucket's graph depends on besides the transformer: the rollout steps and the guidance. */
/** How a bucket builds the transformer (the kit's shared options: dtype, recompute, attentionHeadChunk). */
export type KontextBucketOptions = TransformerGraphOptions;

/**
 * A Kontext bucket of a latent grid [h, w] (before packing), with `textTokens` T5 rows: shapes, the dynamically
 * shifted schedule, the velocity graph. Shared by the policy and its shape-only twin (`edit-r1 plan`), so the
 * planned graphs are the ones a run compiles.
 */
export function kontextBucket(
  transformer: FluxKontextModel["transformer"],
  scheduler: FlowScheduleConfig,
  settings: Pick<FluxKontextSettings, "steps" | "guidance">,
  grid: readonly [number, number],
  textTokens: number,
  options: KontextBucketOptions = {},
): GraphBucket {
  const { config } = transformer;
  const tokens = (grid[0] / 2) * (grid[1] / 2);
  return {
    latentShape: [tokens, config.inChannels],
    conditions: {
      context: { dtype: "float32", shape: [tokens, config.inChannels] },
      text: { dtype: "float32", shape: [textTokens, config.jointAttentionDim] },
      pooled: { dtype: "float32", shape: [config.pooledProjectionDim] },
    },
    // Dynamic shift from the target tokens only (the context tokens do not count), as diffusers' Kontext does.
    sigmas: flowMatchSchedule(scheduler, { numSteps: settings.steps, imageSeqLen: tokens }).sigmas,
    buildVelocity: (g: Graph, xt, t, cond, lora) => {
      const batch = xt.shape[0]!;
      return buildKontextVelocity(
        g,
        transformer,
        {
          latents: xt,
          context: cond.context!,
          text: cond.text!,
          pooled: cond.pooled!,
          timestep: t,
          // Kontext has no true CFG: its distilled guidance is one more input, fixed for the whole run.
          guidance: config.guidanceEmbeds
            ? g.constant(new Float32Array(batch).fill(settings.guidance), [batch])
            : undefined,
        },
        {
          targetGrid: grid,
          contextGrid: grid,
          lora,
          ...transformerGraphOptions(options),
        },
      );
    },
  };
}
