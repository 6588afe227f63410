import {
  createGraphPolicy,
  type GraphBucket,
  type GraphPolicy,
  graphPolicyOptions,
  type PolicyTrainingOptions,
  resizeLikeDiffusers,
  type TransformerGraphOptions,
  transformerGraphOptions,
} from "@edit-r1/adapter-kit";
import { type EditRequest, type FlowScheduleConfig, flowMatchSchedule, requestSources } from "@edit-r1/core";
import type { Graph } from "@edit-r1/engine";
import type { ResolveOptions } from "@edit-r1/hub";
import { buildQwenImageEditVelocity, type ComputeDType, type QwenImageShape } from "@edit-r1/models";
import { editorOf, qwenImageEditSettings } from "./load.js";
import { maxSourcesOf, type QwenImageEditEditor, type TextCondition } from "./qwen-image-edit-editor.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import { openQwenImageEditModel, type QwenImageEditModel } from "./qwen-image-edit-model.js";

/** The model and rollout protocol; the LoRA, seeds and sessions are the kit's PolicyTrainingOptions. */
export interface LoadQwenImageEditPolicyOptions extends ResolveOptions, PolicyTrainingOptions {
  /** A local pipeline folder or a Hub repo id in the local cache. */
  model: string;
  /** Compute dtype of the transformer and the VLM (default float32; the VAE stays float32). */
  dtype?: ComputeDType;
  /** The rollout output size (default 512×512, as Edit-R1); both sides multiples of 16 for the real model. */
  resolution?: { width: number; height: number };
  /** Rollout steps (default 6); the schedule is linspace(1, 1/steps, steps), dynamically shifted, stretched, then 0. */
  steps?: number;
  /** Area each source is VAE-encoded at (default 512², Edit-R1's rollouts; the released pipeline uses 1024²). */
  vaeImageArea?: number;
  /** Area each source is shown to the VLM at (default 384², the Plus pipeline's). */
  conditionImageArea?: number;
  /**
   * Text-condition rows every sample is padded (with a mask) or cut to (default 256, as Edit-R1 trains). They
   * include the VLM's image tokens: a 384² source alone is 196.
   */
  maxTextTokens?: number;
  /**
   * Gradient checkpointing per transformer block in the fused training graph: each block's interior is
   * recomputed in the backward pass, so only the blocks' outputs stay alive (the same regions
   * `edit-r1 plan --recompute` plans). The loss and gradients are the same as without.
   */
  recompute?: boolean;
}

/** Qwen-Image-Edit as a TrainablePolicy, with the base editor that encodes its conditions and decodes its latents. */
export interface QwenImageEditPolicy extends GraphPolicy {
  readonly editor: QwenImageEditEditor;
  readonly resolution: { width: number; height: number };
}

/**
 * Opens a Qwen-Image-Edit pipeline as a TrainablePolicy with Edit-R1's rollout protocol (512×512, sources VAE-
 * encoded at 512² area and shown to the VLM at 384², 6 steps, no CFG, 256 text rows), each option overriding
 * one setting. θ is a LoRA on the transformer; per sample the conditions are the sources' packed latents and
 * the VLM's hidden states with their mask, encoded by a base-model editor so they are exactly the editor's.
 * Requests are bucketed by the sources' VAE sizes (their img_shapes), which depend on their aspect ratios.
 */
export async function loadQwenImageEditPolicy(
  options: LoadQwenImageEditPolicyOptions,
): Promise<QwenImageEditPolicy> {
  const resolution = options.resolution ?? { width: 512, height: 512 };
  const model = await openQwenImageEditModel(options.model, options);
  const settings = qwenImageEditSettings({
    preset: "rollout",
    outputSize: resolution,
    ...(options.steps !== undefined ? { steps: options.steps } : {}),
    ...(options.vaeImageArea !== undefined ? { vaeImageArea: options.vaeImageArea } : {}),
    ...(options.conditionImageArea !== undefined ? { conditionImageArea: options.conditionImageArea } : {}),
  });
  const maxText = options.maxTextTokens ?? 256;
  if (!Number.isInteger(maxText) || maxText < 1)
    throw new QwenImageEditError(`maxTextTokens must be a positive integer, got ${maxText}`);
  // The base editor: no LoRA (θ lives in the policy's graphs), the same device, dtype and threads.
  const editor = editorOf(model, settings, {
    device: options.device,
    dtype: options.dtype,
    threads: options.threads,
  });
  try {
    const multiple = 2 * editor.vaeScale;
    const { width, height } = resolution;
    if (![width, height].every((d) => Number.isInteger(d) && d > 0 && d % multiple === 0))
      throw new QwenImageEditError(
        `resolution ${width}×${height}: both sides must be positive multiples of ${multiple} ` +
          `(the VAE's factor ${editor.vaeScale} times the 2×2 token packing), e.g. 512×512`,
      );
    const { config } = model.transformer;
    // Checkpointing is per block inside the velocity graph, not one region around the whole of v_θ.
    const policyOptions = await graphPolicyOptions({ ...options, recompute: false });
    const target: QwenImageShape = [1, height / multiple, width / multiple];

    const bucketOf = (shapes: readonly QwenImageShape[], textTokens: number): GraphBucket =>
      qwenImageEditBucket(model.transformer, model.scheduler, settings.steps, shapes, textTokens, {
        dtype: options.dtype,
        ...(options.recompute ? { recompute: true } : {}),
        attentionHeadChunk: options.attentionHeadChunk,
      });
    /** [target, ...each source's VAE-latent shape] for a request. */
    const shapesOf = (request: EditRequest): QwenImageShape[] => [
      target,
      ...editor
        .sizesOf(requestSources(request))
        .vae.map(({ width: w, height: h }) => [1, h / multiple, w / multiple] as QwenImageShape),
    ];
    const keyOf = (shapes: readonly QwenImageShape[]) => shapes.map((s) => `${s[1]}x${s[2]}`).join("+");
    const policy = createGraphPolicy(
      {
        name: "qwen-image-edit",
        baseModel: model.dir,
        bucketKey: (request) => keyOf(shapesOf(request)),
        bucket: (_key, request) => bucketOf(shapesOf(request), maxText),
        // The smallest build that creates every LoRA factor: one target token, one source token, one text row.
        probeBucket: () =>
          bucketOf(
            [
              [1, 1, 1],
              [1, 1, 1],
            ],
            1,
          ),
        maxSources: maxSourcesOf(model.variant),
        encode: async (request: EditRequest) => {
          const sources = requestSources(request);
          const sizes = editor.sizesOf(sources);
          const condition = sources.map((s, i) =>
            resizeLikeDiffusers(s, sizes.condition[i]!.width, sizes.condition[i]!.height),
          );
          const text = await editor.encodePrompt(request.instruction, condition);
          const latents = await editor.encodeSources(sources, sizes.vae);
          return { sources: latents.packed, ...fixedLength(text, maxText, config.jointAttentionDim) };
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

/** A text condition padded (mask 0) or cut to exactly `rows` rows, as Edit-R1 pads or truncates to 256. */
function fixedLength(
  text: TextCondition,
  rows: number,
  width: number,
): { text: Float32Array; text_mask: Float32Array } {
  const valid = text.mask ? text.mask.reduce((n, m) => n + m, 0) : text.length;
  const kept = Math.min(valid, rows);
  const out = new Float32Array(rows * width);
  out.set(text.hidden.subarray(0, kept * width));
  return { text: out, text_mask: new Float32Array(rows).fill(1, 0, kept) };
}

/** What a Qwen-Image-Edit bucket's graph depends on besides the transformer. */
/** How a bucket builds the transformer (the kit's shared options: dtype, recompute, attentionHeadChunk). */
export type QwenImageEditBucketOptions = TransformerGraphOptions;

/**
 * A Qwen-Image-Edit bucket of img_shapes [target, ...sources] with `textTokens` text rows: shapes, the
 * dynamically shifted schedule, the velocity graph. Shared by the policy and its shape-only twin
 * (`edit-r1 plan`), so the planned graphs are the ones a run compiles.
 */
export function qwenImageEditBucket(
  transformer: QwenImageEditModel["transformer"],
  scheduler: FlowScheduleConfig,
  steps: number,
  shapes: readonly QwenImageShape[],
  textTokens: number,
  options: QwenImageEditBucketOptions = {},
): GraphBucket {
  const { config } = transformer;
  const tokens = shapes.map(([f, h, w]) => f * h * w);
  const sourceTokens = tokens.slice(1).reduce((a, b) => a + b, 0);
  return {
    latentShape: [tokens[0]!, config.inChannels],
    conditions: {
      sources: { dtype: "float32", shape: [sourceTokens, config.inChannels] },
      text: { dtype: "float32", shape: [textTokens, config.jointAttentionDim] },
      text_mask: { dtype: "float32", shape: [textTokens] },
    },
    // Dynamic shift from the target tokens only, as the pipelines do.
    sigmas: flowMatchSchedule(scheduler, { numSteps: steps, imageSeqLen: tokens[0]! }).sigmas,
    buildVelocity: (g: Graph, xt, t, cond, lora) =>
      buildQwenImageEditVelocity(
        g,
        transformer,
        { latents: xt, sources: cond.sources!, text: cond.text!, textMask: cond.text_mask!, timestep: t },
        { imgShapes: shapes, lora, ...transformerGraphOptions(options) },
      ),
  };
}
