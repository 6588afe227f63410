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
import { flowScheduleConfigFromDiffusers } from "@edit-r1/core";
import { type ComputeDType, parseFluxTransformerConfig } from "@edit-r1/models";
import { KONTEXT_ROLLOUT_SETTINGS } from "./flux-kontext-editor.js";
import { FluxKontextError } from "./flux-kontext-error.js";
import { kontextBucket } from "./flux-kontext-policy.js";
import { FLUX_KONTEXT_SCHEDULER_CONFIG } from "./replica.js";

export type { ShapeOnlyPolicy } from "@edit-r1/adapter-kit";

/** FLUX.1-Kontext-dev's transformer tensor shapes (bf16, 1160 tensors), shipped with the package. */
export const FLUX_KONTEXT_SHAPES = fileURLToPath(new URL("../shapes/transformer.json.gz", import.meta.url));

/** FLUX's VAE downsamples by 8 (four blocks); the 2×2 packing makes 16 pixels per token side. */
const VAE_FACTOR = 8;

export interface PlanFluxKontextPolicyOptions extends PolicyTrainingOptions {
  dtype?: ComputeDType;
  resolution?: { width: number; height: number };
  steps?: number;
  guidance?: number;
  maxSequenceLength?: number;
  /** Gradient checkpointing per transformer block in the graphs (the plan's --recompute). */
  recompute?: boolean;
  /** Another shape manifest (default: FLUX_KONTEXT_SHAPES). */
  shapes?: string;
}

/**
 * FLUX.1-Kontext-dev's trainable policy built on the full checkpoint's tensor shapes instead of its weights: the
 * same buckets, LoRA and graphs `loadFluxKontextPolicy` makes at this resolution (Edit-R1's 128 T5 rows,
 * guidance constant), for `edit-r1 plan` on a machine without the 24 GB of weights. Its graphs can be built,
 * checked and planned; encoding, decoding and running them fail.
 */
export async function planFluxKontextPolicy(
  options: PlanFluxKontextPolicyOptions = {},
): Promise<ShapeOnlyPolicy> {
  const path = options.shapes ?? FLUX_KONTEXT_SHAPES;
  const { manifest, weights } = await shapeOnlyTransformer(path);
  const transformer = { config: parseFluxTransformerConfig(manifest.config, path), weights };
  const r = KONTEXT_ROLLOUT_SETTINGS;
  const resolution = options.resolution ?? (r.outputSize as { width: number; height: number });
  const { width, height } = resolution;
  const { stub } = shapeOnlyGuards("FLUX.1-Kontext", resolution, 2 * VAE_FACTOR, FluxKontextError);
  const settings = { steps: options.steps ?? r.steps, guidance: options.guidance ?? r.guidance };
  const textTokens = options.maxSequenceLength ?? r.maxSequenceLength;
  const scheduler = flowScheduleConfigFromDiffusers({ ...FLUX_KONTEXT_SCHEDULER_CONFIG });
  const bucketOptions = {
    dtype: options.dtype,
    recompute: options.recompute,
    attentionHeadChunk: options.attentionHeadChunk,
  };
  const grid = [height / VAE_FACTOR, width / VAE_FACTOR] as const;
  const policy = createGraphPolicy(
    {
      name: "flux-kontext",
      baseModel: "black-forest-labs/FLUX.1-Kontext-dev",
      bucketKey: () => `${width}x${height}`,
      bucket: () => kontextBucket(transformer, scheduler, settings, grid, textTokens, bucketOptions),
      probeBucket: () => kontextBucket(transformer, scheduler, settings, [2, 2], 1, bucketOptions),
      encode: stub("encode conditions"),
      decode: stub("decode latents"),
    },
    await graphPolicyOptions({ ...options, recompute: false }),
  );
  return asShapeOnlyPolicy(
    policy,
    manifest,
    resolution,
    `context image at the target size, ${textTokens} T5 rows (the policy's defaults)`,
  );
}
