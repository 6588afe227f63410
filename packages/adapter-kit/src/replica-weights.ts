import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { Rng } from "@edit-r1/core";
import { Graph } from "@edit-r1/engine";
import {
  hubConfigJson,
  RecordingWeights,
  type RecordingWeightsOptions,
  type ReplicaTensor,
  replicaTensor,
  replicaWeightValues,
  type WeightShapes,
} from "@edit-r1/models";

/**
 * The model-agnostic half of an adapter's `cli.writeReplica` (a tiny random-weight checkpoint in the real Hub
 * layout): record which weights a graph builder reads at a config, fill them with seeded values, write them as
 * (sharded) safetensors with the index transformers and diffusers write, beside configs in their JSON style.
 * The primitives live in @edit-r1/models (so non-adapter packages, e.g. rewards, share them) and are re-exported
 * from this package's index; what is here puts them together for adapters. An adapter only wires its models:
 * which builders, which configs, which files.
 */

/** The stored dtype of a replica's weights: bfloat16 (as FLUX and Qwen-Image are released) or float32. */
export type ReplicaDType = ReplicaTensor["dtype"];

/**
 * The weights `build` reads: it gets a fresh graph and recording weights and builds the model into them (on
 * graph inputs of any small size; only the weights' names and shapes are kept, in the order asked for).
 */
export function recordWeightShapes(
  name: string,
  build: (graph: Graph, weights: RecordingWeights) => void,
  options: RecordingWeightsOptions = {},
): WeightShapes {
  const graph = new Graph(name);
  const weights = new RecordingWeights(graph, options);
  build(graph, weights);
  return weights.shapes;
}

/**
 * Seeded random values (`replicaWeightValues`: norm scales 1, small biases, matrices N(0,1)·0.5/√fan_in) for
 * every weight of `shapes`, in its order, stored as `dtype`. Each weight has its own stream,
 * `Rng.derive(seed, "<component>/<key>")`, so its values depend on the seed, the component and its name only.
 */
export function replicaTensors(
  component: string,
  shapes: WeightShapes,
  seed: number,
  dtype: ReplicaDType = "bfloat16",
): [string, ReplicaTensor][] {
  return [...shapes].map(([key, shape]) => {
    const values = replicaWeightValues(key, shape, Rng.derive(seed, `${component}/${key}`));
    return [key, replicaTensor(values, shape, dtype)];
  });
}

/** Writes `value` as diffusers and transformers write configs (`hubConfigJson`) to `path`, creating its folder. */
export async function writeConfigJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, hubConfigJson(value));
}

/** `seed` (default 0) if it is a non-negative integer; otherwise a RangeError naming `caller`. */
export function checkReplicaSeed(caller: string, seed: unknown = 0): number {
  if (!(typeof seed === "number" && Number.isInteger(seed) && seed >= 0)) {
    throw new RangeError(`${caller}: seed must be a non-negative integer, got ${String(seed)}`);
  }
  return seed;
}

/** `dtype` (default bfloat16) if a replica can store it; otherwise a RangeError naming `caller`. */
export function checkReplicaDType(caller: string, dtype: unknown = "bfloat16"): ReplicaDType {
  if (dtype !== "bfloat16" && dtype !== "float32") {
    throw new RangeError(`${caller}: dtype must be "bfloat16" or "float32", got ${JSON.stringify(dtype)}`);
  }
  return dtype;
}

/** A number a replica's own config JSON holds (a dimension another component is sized from). */
export function replicaConfigNumber(json: Record<string, unknown>, key: string): number {
  const v = json[key];
  if (typeof v !== "number") throw new Error(`config: "${key}" must be a number`);
  return v;
}
