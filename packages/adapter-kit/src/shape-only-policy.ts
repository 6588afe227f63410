import {
  readShapeManifest,
  type ShapeManifest,
  shapeManifestBytes,
  shapeOnlyWeightSource,
  type WeightSource,
} from "@edit-r1/models";
import type { GraphPolicy } from "./graph-policy.js";

/** A policy whose graphs are the full-size model's, with no weights behind them (for `edit-r1 plan`). */
export interface ShapeOnlyPolicy extends GraphPolicy {
  readonly resolution: { width: number; height: number };
  /** Which checkpoint's shapes, how many tensors, and their bytes as stored. */
  readonly shapeSource: { source: string; tensors: number; bytes: number; dtype: string; notes: string[] };
}

/** A shipped shape manifest and a weight source that gives its shapes (and fails on any read of values). */
export async function shapeOnlyTransformer(
  path: string,
): Promise<{ manifest: ShapeManifest; weights: WeightSource }> {
  const manifest = await readShapeManifest(path);
  return { manifest, weights: shapeOnlyWeightSource(manifest) };
}

/**
 * What every shape-only plan policy checks and stubs: the resolution is a positive multiple of `multiple` on both
 * sides, and `stub(what)` is an encode/decode that fails saying the model must be loaded with --model.
 */
export function shapeOnlyGuards(
  model: string,
  resolution: { width: number; height: number },
  multiple: number,
  error: new (message: string) => Error,
): { stub: (what: string) => () => Promise<never> } {
  const { width, height } = resolution;
  if (![width, height].every((d) => Number.isInteger(d) && d > 0 && d % multiple === 0))
    throw new error(
      `resolution ${width}×${height}: both sides must be positive multiples of ${multiple}, e.g. 512×512`,
    );
  return {
    stub: (what) => async () => {
      throw new error(
        `a shape-only ${model} policy (for edit-r1 plan) cannot ${what}: load the model with --model`,
      );
    },
  };
}

/** The policy with where its shapes came from attached. */
export function asShapeOnlyPolicy(
  policy: GraphPolicy,
  manifest: ShapeManifest,
  resolution: { width: number; height: number },
  note: string,
): ShapeOnlyPolicy {
  return Object.assign(policy, {
    resolution: { width: resolution.width, height: resolution.height },
    shapeSource: {
      source: manifest.source,
      tensors: Object.keys(manifest.tensors).length,
      bytes: shapeManifestBytes(manifest),
      dtype: manifest.dtype,
      notes: [note],
    },
  });
}
