import { fileURLToPath } from "node:url";
import {
  createGraphPolicy,
  type GraphPolicy,
  graphPolicyOptions,
  type PolicyTrainingOptions,
} from "@edit-r1/adapter-kit";
import { flowScheduleConfigFromDiffusers, requestSources } from "@edit-r1/core";
import {
  type ComputeDType,
  parseQwenImageTransformerConfig,
  type QwenImageShape,
  readShapeManifest,
  shapeManifestBytes,
  shapeOnlyWeightSource,
} from "@edit-r1/models";
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

/** A policy whose graphs are the full-size model's, with no weights behind them. */
export interface ShapeOnlyQwenPolicy extends GraphPolicy {
  readonly resolution: { width: number; height: number };
  /** Which checkpoint's shapes, how many tensors, and their bytes as stored. */
  readonly shapeSource: { source: string; tensors: number; bytes: number; dtype: string; notes: string[] };
}

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
  const manifest = await readShapeManifest(path);
  const config = parseQwenImageTransformerConfig(manifest.config, path);
  const transformer = { config, weights: shapeOnlyWeightSource(manifest) };
  const resolution = options.resolution ?? { width: 512, height: 512 };
  const settings = qwenImageEditSettings({
    preset: "rollout",
    outputSize: resolution,
    ...(options.steps !== undefined ? { steps: options.steps } : {}),
    ...(options.vaeImageArea !== undefined ? { vaeImageArea: options.vaeImageArea } : {}),
  });
  const { width, height } = resolution;
  const multiple = 2 * VAE_SCALE;
  if (![width, height].every((d) => Number.isInteger(d) && d > 0 && d % multiple === 0))
    throw new QwenImageEditError(
      `resolution ${width}×${height}: both sides must be positive multiples of ${multiple}, e.g. 512×512`,
    );
  const textTokens = options.maxTextTokens ?? 256;
  const scheduler = flowScheduleConfigFromDiffusers({ ...QWEN_IMAGE_SCHEDULER_CONFIG });
  const bucketOptions = { dtype: options.dtype, recompute: options.recompute };
  const target: QwenImageShape = [1, height / multiple, width / multiple];
  const shapesOf = (sources: readonly { width: number; height: number }[]): QwenImageShape[] => [
    target,
    ...qwenImageEditSizes("edit-plus", sources, settings, VAE_SCALE, resolution).vae.map(
      ({ width: w, height: h }) => [1, h / multiple, w / multiple] as QwenImageShape,
    ),
  ];
  const shapeOnly = (what: string) => async (): Promise<never> => {
    throw new QwenImageEditError(
      `a shape-only Qwen-Image-Edit policy (for edit-r1 plan) cannot ${what}: load the model with --model`,
    );
  };
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
      encode: shapeOnly("encode conditions"),
      decode: shapeOnly("decode latents"),
    },
    await graphPolicyOptions({ ...options, recompute: false }),
  );
  const area = Math.round(Math.sqrt(settings.vaeImageArea));
  return Object.assign(policy, {
    resolution: { width, height },
    shapeSource: {
      source: manifest.source,
      tensors: Object.keys(manifest.tensors).length,
      bytes: shapeManifestBytes(manifest),
      dtype: manifest.dtype,
      notes: [`sources VAE-encoded at ${area}² area, ${textTokens} text rows (the policy's defaults)`],
    },
  });
}
