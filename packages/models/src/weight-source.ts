import {
  DTYPE_BYTES,
  type DType,
  EditR1Error,
  type ExternalData,
  type InitializerData,
  numel,
} from "@edit-r1/engine";

/**
 * One named weight as a model builder sees it: its stored dtype and shape, and where its values are.
 * `data` is either the values themselves, a byte range of a file (an ONNX external-data reference), or a
 * list of parts stacked along axis 0 — the last lets a key mapping reorder row blocks of a stored tensor
 * (e.g. BFL's swapped final modulation halves) without copying a byte.
 */
export interface WeightEntry {
  dtype: DType;
  shape: readonly number[];
  data: InitializerData | readonly WeightEntry[];
}

/** Weights by name: a safetensors file, a sharded checkpoint, a key mapping over another source, or memory. */
export interface WeightSource {
  /** Where the weights come from, for error messages (e.g. a file path). */
  readonly description: string;
  get(name: string): WeightEntry | undefined;
  names(): readonly string[];
}

/** A weight that is missing, has the wrong shape or dtype, or cannot be mapped. */
export class WeightError extends EditR1Error {
  override readonly name = "WeightError";
  constructor(
    message: string,
    readonly key: string,
  ) {
    super(message);
  }
}

export function isWeightParts(data: WeightEntry["data"]): data is readonly WeightEntry[] {
  return Array.isArray(data);
}

const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/** A source over entries held in memory (tests, converted checkpoints). */
export function memoryWeightSource(
  entries: ReadonlyMap<string, WeightEntry> | Readonly<Record<string, WeightEntry>>,
  description = "in-memory weights",
): WeightSource {
  const map = entries instanceof Map ? entries : new Map(Object.entries(entries));
  return {
    description,
    get: (name) => map.get(name),
    names: () => [...map.keys()],
  };
}

/**
 * Rows `start .. start+count` of a weight along axis 0, without copying: a subarray of inline values, a
 * narrower byte range of external data, or the overlapping parts of a stacked entry.
 */
export function sliceWeightRows(entry: WeightEntry, start: number, count: number, key = "?"): WeightEntry {
  const rows = entry.shape[0];
  if (rows === undefined || start < 0 || count < 0 || start + count > rows) {
    throw new WeightError(
      `weight "${key}" of shape ${fmt(entry.shape)}: cannot take rows ${start}..${start + count} along axis 0.`,
      key,
    );
  }
  const shape = [count, ...entry.shape.slice(1)];
  const data = entry.data;
  if (isWeightParts(data)) {
    const parts: WeightEntry[] = [];
    let at = 0;
    for (const part of data) {
      const n = part.shape[0]!;
      const lo = Math.max(start, at);
      const hi = Math.min(start + count, at + n);
      if (hi > lo) parts.push(sliceWeightRows(part, lo - at, hi - lo, key));
      at += n;
    }
    return { dtype: entry.dtype, shape, data: parts.length === 1 ? parts[0]!.data : parts };
  }
  const rowElems = numel(entry.shape.slice(1));
  if ("path" in data) {
    const rowBytes = rowElems * DTYPE_BYTES[entry.dtype];
    const ext: ExternalData = {
      path: data.path,
      offset: data.offset + start * rowBytes,
      length: count * rowBytes,
    };
    return { dtype: entry.dtype, shape, data: ext };
  }
  return {
    dtype: entry.dtype,
    shape,
    data: data.subarray(start * rowElems, (start + count) * rowElems) as InitializerData,
  };
}

/** Stacks entries of equal trailing shape and dtype along axis 0 (lazily: the parts are kept as they are). */
export function stackWeightRows(parts: readonly WeightEntry[], key = "?"): WeightEntry {
  const first = parts[0];
  if (!first) throw new WeightError(`weight "${key}": nothing to stack.`, key);
  const tail = first.shape.slice(1);
  let rows = 0;
  for (const p of parts) {
    if (
      p.dtype !== first.dtype ||
      p.shape.length !== first.shape.length ||
      p.shape.slice(1).some((d, i) => d !== tail[i])
    ) {
      throw new WeightError(
        `weight "${key}": cannot stack ${p.dtype}${fmt(p.shape)} onto ${first.dtype}${fmt(first.shape)}.`,
        key,
      );
    }
    rows += p.shape[0]!;
  }
  return { dtype: first.dtype, shape: [rows, ...tail], data: parts };
}
