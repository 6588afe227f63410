import { Rng } from "@edit-r1/core";

/**
 * A request's starting noise, from (seed, namespace, request key) only: the same edit gets the same noise
 * whatever batch it is in and whatever else runs, which makes editors batch-invariant and benchmarks repeatable.
 * `namespace` (the adapter's name) keeps two adapters' streams apart.
 */
export function requestNoise(seed: number, namespace: string, key: string, size: number): Float32Array {
  return Rng.derive(seed, `${namespace}/noise/${key}`).normals(size);
}

/** The starting noise of a batch, each request's from `requestNoise`, concatenated batch-first. */
export function batchNoise(
  seed: number,
  namespace: string,
  keys: readonly string[],
  size: number,
): Float32Array {
  const out = new Float32Array(keys.length * size);
  keys.forEach((key, b) => {
    out.set(requestNoise(seed, namespace, key, size), b * size);
  });
  return out;
}
