import { type OpenSafetensorsOptions, openSafetensors, type SafetensorsCheckpoint } from "@edit-r1/engine";
import type { WeightSource } from "./weight-source.js";

/**
 * The tensors of a safetensors checkpoint as weights whose data stays in the file: each entry is an
 * external-data reference (path, absolute offset, length), so a graph built from it never copies the weights.
 */
export function safetensorsWeightSource(checkpoint: SafetensorsCheckpoint): WeightSource {
  return {
    description: checkpoint.path,
    get(name) {
      if (!checkpoint.has(name)) return undefined;
      const t = checkpoint.get(name);
      return { dtype: t.dtype, shape: t.shape, data: { path: t.path, offset: t.offset, length: t.length } };
    },
    names: () => checkpoint.names(),
  };
}

/** Opens a `.safetensors` file or a sharded `*.safetensors.index.json` as a weight source. */
export async function openSafetensorsWeights(
  path: string,
  options: OpenSafetensorsOptions = {},
): Promise<WeightSource> {
  return safetensorsWeightSource(await openSafetensors(path, options));
}
