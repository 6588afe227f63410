import { fileURLToPath } from "node:url";
import {
  asShapeOnlyPolicy,
  createGraphPolicy,
  graphPolicyOptions,
  type PolicyTrainingOptions,
  type ShapeOnlyPolicy,
  shapeOnlyGuards,
  shapeOnlyTransformer,
} from "@edit-r1/adapter-kit";
import { flowScheduleConfigFromDiffusers, requestSources } from "@edit-r1/core";
import { type ComputeDType, parseQwenImageTransformerConfig, type QwenImageShape } from "@edit-r1/models";
import { qwenImageEditSizes } from "./image-sizes.js";
import { qwenImageEditSettings } from "./load.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import { qwenImageEditBucket } from "./qwen-image-edit-policy.js";
import { QWEN_IMAGE_SCHEDULER_CONFIG } from "./replica.js";

/** Qwen-Image-Edit(-2509)'s transformer tensor shapes (bf16, 1933 tensors), shipped with the package. */
export const QWEN_IMAGE_EDIT_SHAPES = fileURLToPath(
  new URL("../shapes/transformer.json.gz", import.meta.url),
);

/** The Qwen-Image VAE downsamples by 8 (dim_mult of four); the 2×2 packing makes 16 pixels per token side. */
const VAE_SCALE = 8;

export interface PlanQwenImageEditPolicyOptions extends PolicyTrainingOptions {
  dtype?: ComputeDType;
  resolution?: { width: number; height: number };
  steps?: number;
  /** Area each source is VAE-encoded at (default 512², Edit-R1's rollouts, as the policy). */
  vaeImageArea?: number;
  /** Text-condition rows (default 256, as the policy). */
  maxTextTokens?: number;
  /** Gradient checkpointing per transformer block in the graphs (the plan's --recompute). */
  recompute?: boolean;
  /** Another shape manifest (default: QWEN_IMAGE_EDIT_SHAPES). */
  shapes?: string;
}

/** A Qwen-Image-Edit policy with the full-size graphs and no weights (the kit's ShapeOnlyPolicy). */
export type ShapeOnlyQwenPolicy = ShapeOnlyPolicy;

/**
 * Qwen-Image-Edit-2509's trainable policy built on the full transformer's tensor shapes instead of its weights:
 * the same buckets (target at the resolution, each source VAE-encoded at `vaeImageArea`, 256 text rows), LoRA
 * and graphs `loadQwenImageEditPolicy` makes, for `edit-r1 plan` without the 41 GB of weights. Its graphs can
 * be built, checked and planned; encoding, decoding and running them fail.
 */
export async function planQwenImageEditPolicy(
  options: PlanQwenImageEditPolicyOptions = {},
): Promise<ShapeOnlyQwenPolicy> {
  const path = options.shapes ?? QWEN_IMAGE_EDIT_SHAPES;
  const { manifest, weights } = await shapeOnlyTransformer(path);
  const transformer = { config: parseQwenImageTransformerConfig(manifest.config, path), weights };
  const resolution = options.resolution ?? { width: 512, height: 512 };
  const settings = qwenImageEditSettings({
    preset: "rollout",
    outputSize: resolution,
    ...(options.steps !== undefined ? { steps: options.steps } : {}),
    ...(options.vaeImageArea !== undefined ? { vaeImageArea: options.vaeImageArea } : {}),
  });
  const { width, height } = resolution;
  const multiple = 2 * VAE_SCALE;
  const { stub } = shapeOnlyGuards("Qwen-Image-Edit", resolution, multiple, QwenImageEditError);
  const textTokens = options.maxTextTokens ?? 256;
  const scheduler = flowScheduleConfigFromDiffusers({ ...QWEN_IMAGE_SCHEDULER_CONFIG });
  const bucketOptions = {
    dtype: options.dtype,
    recompute: options.recompute,
    attentionHeadChunk: options.attentionHeadChunk,
  };
  const target: QwenImageShape = [1, height / multiple, width / multiple];
  const shapesOf = (sources: readonly { width: number; height: number }[]): QwenImageShape[] => [
    target,
    ...qwenImageEditSizes("edit-plus", sources, settings, VAE_SCALE, resolution).vae.map(
      ({ width: w, height: h }) => [1, h / multiple, w / multiple] as QwenImageShape,
    ),
  ];
  const keyOf = (shapes: readonly QwenImageShape[]) => shapes.map((s) => `${s[1]}x${s[2]}`).join("+");
  const policy = createGraphPolicy(
    {
      name: "qwen-image-edit",
      baseModel: "Qwen/Qwen-Image-Edit-2509",
      bucketKey: (request) => keyOf(shapesOf(requestSources(request))),
      bucket: (_key, request) =>
        qwenImageEditBucket(
          transformer,
          scheduler,
          settings.steps,
          shapesOf(requestSources(request)),
          textTokens,
          bucketOptions,
        ),
      probeBucket: () =>
        qwenImageEditBucket(
          transformer,
          scheduler,
          settings.steps,
          [
            [1, 1, 1],
            [1, 1, 1],
          ],
          1,
          bucketOptions,
        ),
      maxSources: 3,
      encode: stub("encode conditions"),
      decode: stub("decode latents"),
    },
    await graphPolicyOptions({ ...options, recompute: false }),
  );
  const area = Math.round(Math.sqrt(settings.vaeImageArea));
  return asShapeOnlyPolicy(
    policy,
    manifest,
    resolution,
    `sources VAE-encoded at ${area}² area, ${textTokens} text rows (the policy's defaults)`,
  );
}
