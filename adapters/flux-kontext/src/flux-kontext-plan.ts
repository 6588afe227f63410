import { fileURLToPath } from "node:url";
import {
  createGraphPolicy,
  type GraphPolicy,
  graphPolicyOptions,
  type PolicyTrainingOptions,
} from "@edit-r1/adapter-kit";
import { flowScheduleConfigFromDiffusers } from "@edit-r1/core";
import {
  type ComputeDType,
  parseFluxTransformerConfig,
  readShapeManifest,
  shapeManifestBytes,
  shapeOnlyWeightSource,
} from "@edit-r1/models";
import { KONTEXT_ROLLOUT_SETTINGS } from "./flux-kontext-editor.js";
import { FluxKontextError } from "./flux-kontext-error.js";
import { kontextBucket } from "./flux-kontext-policy.js";
import { FLUX_KONTEXT_SCHEDULER_CONFIG } from "./replica.js";

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

/** A policy whose graphs are the full-size model's, with no weights behind them. */
export interface ShapeOnlyPolicy extends GraphPolicy {
  readonly resolution: { width: number; height: number };
  /** Which checkpoint's shapes, how many tensors, and their bytes as stored. */
  readonly shapeSource: { source: string; tensors: number; bytes: number; dtype: string; notes: string[] };
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
  const manifest = await readShapeManifest(path);
  const config = parseFluxTransformerConfig(manifest.config, path);
  const transformer = { config, weights: shapeOnlyWeightSource(manifest) };
  const r = KONTEXT_ROLLOUT_SETTINGS;
  const resolution = options.resolution ?? (r.outputSize as { width: number; height: number });
  const { width, height } = resolution;
  const multiple = 2 * VAE_FACTOR;
  if (![width, height].every((d) => Number.isInteger(d) && d > 0 && d % multiple === 0))
    throw new FluxKontextError(
      `resolution ${width}×${height}: both sides must be positive multiples of ${multiple}, e.g. 512×512`,
    );
  const settings = { steps: options.steps ?? r.steps, guidance: options.guidance ?? r.guidance };
  const textTokens = options.maxSequenceLength ?? r.maxSequenceLength;
  const scheduler = flowScheduleConfigFromDiffusers({ ...FLUX_KONTEXT_SCHEDULER_CONFIG });
  const bucketOptions = { dtype: options.dtype, recompute: options.recompute };
  const grid = [height / VAE_FACTOR, width / VAE_FACTOR] as const;
  const shapeOnly = (what: string) => async (): Promise<never> => {
    throw new FluxKontextError(
      `a shape-only FLUX.1-Kontext policy (for edit-r1 plan) cannot ${what}: load the model with --model`,
    );
  };
  const policy = createGraphPolicy(
    {
      name: "flux-kontext",
      baseModel: "black-forest-labs/FLUX.1-Kontext-dev",
      bucketKey: () => `${width}x${height}`,
      bucket: () => kontextBucket(transformer, scheduler, settings, grid, textTokens, bucketOptions),
      probeBucket: () => kontextBucket(transformer, scheduler, settings, [2, 2], 1, bucketOptions),
      encode: shapeOnly("encode conditions"),
      decode: shapeOnly("decode latents"),
    },
    await graphPolicyOptions({ ...options, recompute: false }),
  );
  return Object.assign(policy, {
    resolution: { width, height },
    shapeSource: {
      source: manifest.source,
      tensors: Object.keys(manifest.tensors).length,
      bytes: shapeManifestBytes(manifest),
      dtype: manifest.dtype,
      notes: [`context image at the target size, ${textTokens} T5 rows (the policy's defaults)`],
    },
  });
}
