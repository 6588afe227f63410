import { readFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { DTYPE_BYTES, type DType, numel } from "@edit-r1/engine";
import { ModelConfigError } from "./model-config-error.js";
import type { WeightEntry, WeightSource } from "./weight-source.js";

/**
 * The tensor names and shapes of a full-size checkpoint, without its values: what `edit-r1 plan` builds the
 * full-size graphs from when the weights are not on the machine. Adapters ship one per model as gzip'd JSON
 * (`scripts/shape-manifest.mjs` writes it from a key list).
 */
export interface ShapeManifest {
  /** Which checkpoint the shapes are of (repo and folder). */
  source: string;
  /** The dtype every tensor is stored in. */
  dtype: DType;
  /** The checkpoint's config.json (diffusers keys). */
  config: Record<string, unknown>;
  /** Shape per tensor name. */
  tensors: Record<string, number[]>;
}

/**
 * The file every shape-only weight claims to live in. It does not exist: a graph built from a shape-only
 * source can be inspected and planned, never run (opening it fails naming this file).
 */
export const SHAPE_ONLY_FILE = "shape-only-weights-not-loaded.safetensors";

/** Reads a gzip'd (or plain) JSON shape manifest, checking its form. */
export async function readShapeManifest(path: string): Promise<ShapeManifest> {
  const raw = await readFile(path);
  const text = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString("utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelConfigError(`${path}: not a JSON shape manifest (${(e as Error).message})`);
  }
  const m = json as Partial<ShapeManifest>;
  const shapesOk =
    m.tensors !== null &&
    typeof m.tensors === "object" &&
    Object.values(m.tensors).every((s) => Array.isArray(s) && s.every((d) => Number.isInteger(d) && d > 0));
  if (
    typeof m.source !== "string" ||
    typeof m.dtype !== "string" ||
    !(m.dtype in DTYPE_BYTES) ||
    typeof m.config !== "object" ||
    m.config === null ||
    !shapesOk
  )
    throw new ModelConfigError(
      `${path}: a shape manifest needs source, dtype, config and tensors {name: shape}`,
    );
  return m as ShapeManifest;
}

/** Bytes the manifest's tensors take as stored. */
export function shapeManifestBytes(manifest: ShapeManifest): number {
  let total = 0;
  for (const shape of Object.values(manifest.tensors)) total += numel(shape) * DTYPE_BYTES[manifest.dtype];
  return total;
}

/**
 * A weight source over a shape manifest: every tensor at its stored dtype and shape, as external data in
 * `SHAPE_ONLY_FILE` (consecutive offsets, as in a safetensors file), so graph builders, kernel checks and the
 * memory planner see exactly the full-size weights, and nothing can run on them.
 */
export function shapeOnlyWeightSource(manifest: ShapeManifest): WeightSource {
  const entries = new Map<string, WeightEntry>();
  const bytes = DTYPE_BYTES[manifest.dtype];
  let offset = 0;
  for (const [name, shape] of Object.entries(manifest.tensors)) {
    const length = numel(shape) * bytes;
    entries.set(name, { dtype: manifest.dtype, shape, data: { path: SHAPE_ONLY_FILE, offset, length } });
    offset += length;
  }
  return {
    description: `${manifest.source} (shapes only, no weights)`,
    get: (name) => entries.get(name),
    names: () => [...entries.keys()],
  };
}
