import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { float32ToBfloat16, type Graph, numel, type Tensor, writeSafetensors } from "@edit-r1/engine";
import { GraphWeights } from "./graph-weights.js";
import { memoryWeightSource } from "./weight-source.js";

/**
 * Pieces of the tiny random-weight replicas (checkpoints in a real Hub layout, for smoke tests): the weight keys
 * a builder reads, seeded values for them, sharded safetensors with an index, and configs written as
 * transformers and diffusers write them.
 */

/** A weight's name → shape, in the order the builders ask for them. */
export type WeightShapes = Map<string, number[]>;

export interface RecordingWeightsOptions {
  /**
   * Keys `has` answers true for, so a builder that probes for one of several names (T5's "shared.weight" or
   * "encoder.embed_tokens.weight") takes the one the real checkpoint stores. Every other key is absent.
   */
  present?: Iterable<string>;
}

/**
 * Records every `get(key, shape)` a graph builder makes, handing back a placeholder input of that shape, so
 * the builder itself says which weights a checkpoint of a config must hold.
 */
export class RecordingWeights extends GraphWeights {
  readonly shapes: WeightShapes = new Map();
  private readonly placeholders = new Map<string, Tensor>();
  private readonly present: ReadonlySet<string>;

  constructor(graph: Graph, options: RecordingWeightsOptions = {}) {
    super(graph, memoryWeightSource(new Map(), "weight recorder"));
    this.present = new Set(options.present ?? []);
  }

  override has(key: string): boolean {
    return this.present.has(key);
  }

  override get(key: string, shape: readonly number[]): Tensor {
    const seen = this.shapes.get(key);
    if (seen && (seen.length !== shape.length || seen.some((d, i) => d !== shape[i]))) {
      throw new Error(`weight "${key}" was asked for as [${seen}] and as [${shape}]`);
    }
    let t = this.placeholders.get(key);
    if (!t) {
      this.shapes.set(key, [...shape]);
      t = this.graph.input(`weight:${key}`, "float32", shape);
      this.placeholders.set(key, t);
    }
    return t;
  }
}

/** A source of standard normal draws (core's `Rng` is one). */
export interface NormalSource {
  normals(n: number): Float32Array;
}

/**
 * Seeded values for one weight: norm scales (1-D weights, VAE `gamma`) 1, biases N(0, 0.05²), every other
 * tensor N(0, 1)·0.5/√fan_in (fan_in = all but the first dimension), so activations stay of order one.
 */
export function replicaWeightValues(key: string, shape: readonly number[], rng: NormalSource): Float32Array {
  const n = numel(shape);
  if (key.endsWith(".gamma") || (shape.length === 1 && key.endsWith(".weight"))) {
    return new Float32Array(n).fill(1);
  }
  const scale = key.endsWith(".bias") ? 0.05 : 0.5 / Math.sqrt(numel(shape.slice(1)));
  const out = rng.normals(n);
  for (let i = 0; i < n; i++) out[i] *= scale;
  return out;
}

/** A tensor as a replica stores it. */
export interface ReplicaTensor {
  dtype: "bfloat16" | "float32";
  shape: number[];
  data: Float32Array | Uint16Array;
}

/** Float32 values in the stored dtype (bfloat16 rounds to nearest even). */
export function replicaTensor(
  values: Float32Array,
  shape: readonly number[],
  dtype: "bfloat16" | "float32",
): ReplicaTensor {
  return { dtype, shape: [...shape], data: dtype === "bfloat16" ? float32ToBfloat16(values) : values };
}

const SAFETENSORS_METADATA = { format: "pt" };

/** Sorted keys at every level, two-space indent and a final newline, as diffusers and transformers write configs. */
export function hubConfigJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sort(value), null, 2)}\n`;
}

/**
 * Writes `tensors` as `prefix-0000i-of-0000N.safetensors` (N = `shards`, default 2; in key order, cut near equal
 * byte counts, at least one tensor a file) and the `indexName` that maps each key to its file, as transformers
 * and diffusers shard.
 */
export async function writeShardedSafetensors(
  dir: string,
  prefix: string,
  indexName: string,
  tensors: [string, ReplicaTensor][],
  shards = 2,
): Promise<void> {
  if (!(Number.isInteger(shards) && shards >= 1 && shards <= tensors.length)) {
    throw new RangeError(
      `writeShardedSafetensors: shards must be an integer from 1 to the ${tensors.length} tensors, got ${shards}`,
    );
  }
  await mkdir(dir, { recursive: true });
  const bytes = tensors.map(([, t]) => t.data.byteLength);
  const total = bytes.reduce((a, b) => a + b, 0);
  // Shard k ends before the tensor that would take the bytes so far past k/N of the total.
  const bounds = [0];
  let cut = 0;
  let acc = 0;
  for (let k = 1; k < shards; k++) {
    const start = cut;
    while (cut < tensors.length - (shards - k) && acc + bytes[cut]! <= (total * k) / shards)
      acc += bytes[cut++]!;
    if (cut === start) acc += bytes[cut++]!;
    bounds.push(cut);
  }
  bounds.push(tensors.length);
  const pad = (n: number) => String(n).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < shards; i++) {
    const part = tensors.slice(bounds[i], bounds[i + 1]);
    const file = `${prefix}-${pad(i + 1)}-of-${pad(shards)}.safetensors`;
    await writeSafetensors(join(dir, file), part, { metadata: SAFETENSORS_METADATA });
    for (const [key] of part) weightMap[key] = file;
  }
  await writeFile(
    join(dir, indexName),
    hubConfigJson({ metadata: { total_size: total }, weight_map: weightMap }),
  );
}

/** Writes one unsharded safetensors file with the metadata transformers writes. */
export async function writeReplicaSafetensors(
  path: string,
  tensors: [string, ReplicaTensor][],
): Promise<void> {
  await writeSafetensors(path, tensors, { metadata: SAFETENSORS_METADATA });
}
