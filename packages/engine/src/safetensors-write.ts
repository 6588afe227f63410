import { writeFileAtomic } from "./atomic-write.js";
import { DTYPE_BYTES, type DType, numel, SAFETENSORS_DTYPES } from "./dtype.js";
import { SafetensorsError } from "./safetensors-error.js";
import { assertLittleEndian } from "./safetensors-read.js";

/** A tensor to write: its dtype, shape and elements (a typed array of the dtype, or raw bytes). */
export interface WritableTensor {
  dtype: DType;
  shape: readonly number[];
  /**
   * float32 → Float32Array, float64 → Float64Array, float16/bfloat16 → Uint16Array of bits,
   * int32 → Int32Array, int64 → BigInt64Array, uint8/bool → Uint8Array. A Uint8Array (or Buffer)
   * is also accepted for any dtype as the raw little-endian bytes.
   */
  data: ArrayBufferView;
}

export type WritableTensors =
  | Readonly<Record<string, WritableTensor>>
  | Iterable<readonly [string, WritableTensor]>;

export interface WriteSafetensorsOptions {
  /** The `__metadata__` string map (e.g. `{ format: "pt" }`, which PEFT and diffusers expect). */
  metadata?: Readonly<Record<string, string>>;
}

const HEADER_NAMES: Readonly<Record<DType, string>> = Object.fromEntries(
  Object.entries(SAFETENSORS_DTYPES).map(([name, dtype]) => [dtype, name]),
) as Record<DType, string>;

/** The Rust crate's dtype enum order; it sorts by it descending, which groups by element size. */
const WRITE_RANK: Readonly<Record<DType, number>> = {
  bool: 0,
  uint8: 1,
  float16: 2,
  bfloat16: 3,
  int32: 4,
  float32: 5,
  float64: 6,
  int64: 7,
};

const TYPED_FOR: Readonly<Record<DType, string>> = {
  float32: "Float32Array",
  float64: "Float64Array",
  float16: "Uint16Array",
  bfloat16: "Uint16Array",
  int32: "Int32Array",
  int64: "BigInt64Array",
  uint8: "Uint8Array",
  bool: "Uint8Array",
};

/**
 * The file as parts (length prefix + header, then each tensor's bytes) so a large checkpoint is
 * written without first being copied into one buffer. The bytes are those the Python library
 * writes for the same tensors: tensors ordered by dtype (WRITE_RANK, largest element first) then
 * name, so each starts aligned to its element size, and the JSON header padded with spaces to a
 * multiple of 8 bytes.
 */
export function encodeSafetensorsParts(
  tensors: WritableTensors,
  options: WriteSafetensorsOptions = {},
  path = "<in memory>",
): Uint8Array[] {
  assertLittleEndian(path);
  const entries = validate(tensors, path);
  entries.sort(
    ([an, at], [bn, bt]) => WRITE_RANK[bt.dtype] - WRITE_RANK[at.dtype] || (an < bn ? -1 : an > bn ? 1 : 0),
  );
  // Built by hand, not from an object, to keep file order and treat names like "__proto__" or "0" literally.
  const fields: string[] = [];
  if (options.metadata !== undefined) {
    fields.push(`"__metadata__":${JSON.stringify(validMetadata(options.metadata, path))}`);
  }
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of entries) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const info = {
      dtype: HEADER_NAMES[t.dtype],
      shape: [...t.shape],
      data_offsets: [offset, offset + bytes.length],
    };
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += bytes.length;
    parts.push(bytes);
  }
  const json = Buffer.from(`{${fields.join(",")}}`, "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...parts];
}

/** The whole file in one buffer (for small checkpoints and in-memory use). */
export function encodeSafetensors(
  tensors: WritableTensors,
  options: WriteSafetensorsOptions = {},
): Uint8Array {
  // A fresh buffer of its own, never a slice of Node's shared Buffer pool, so `.buffer` is safe to use.
  const parts = encodeSafetensorsParts(tensors, options);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Writes a .safetensors file atomically: a crash mid-write leaves the previous file (or none),
 * never a truncated checkpoint.
 */
export async function writeSafetensors(
  path: string,
  tensors: WritableTensors,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensorsParts(tensors, options, path));
}

function validate(tensors: WritableTensors, path: string): [string, WritableTensor][] {
  const list: [string, WritableTensor][] = isIterable(tensors)
    ? [...tensors].map(([n, t]) => [n, t])
    : Object.entries(tensors);
  const seen = new Set<string>();
  for (const [name, t] of list) {
    const bad = (detail: string) => new SafetensorsError("invalid-input", path, detail, { tensor: name });
    if (name === "__metadata__")
      throw bad(`"__metadata__" is reserved for the metadata map; rename the tensor.`);
    if (seen.has(name)) throw bad("is given twice; tensor names must be unique.");
    seen.add(name);
    if (!Object.hasOwn(DTYPE_BYTES, t.dtype))
      throw bad(`dtype "${t.dtype}" is not one of ${Object.keys(DTYPE_BYTES).join(", ")}.`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`shape [${t.shape.join(", ")}] must hold non-negative integers.`);
    }
    if (!ArrayBuffer.isView(t.data)) throw bad("data is not a typed array or Buffer.");
    const kind = t.data.constructor.name;
    if (kind !== TYPED_FOR[t.dtype] && kind !== "Uint8Array" && kind !== "Buffer") {
      throw bad(
        `data is a ${kind}, but ${t.dtype} takes a ${TYPED_FOR[t.dtype]} (or raw bytes in a Uint8Array).`,
      );
    }
    const expected = numel(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw bad(
        `${t.dtype} of shape [${t.shape.join(", ")}] needs ${expected} bytes, but the data has ${t.data.byteLength}.`,
      );
    }
  }
  return list;
}

function validMetadata(metadata: Readonly<Record<string, string>>, path: string): Record<string, string> {
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        "invalid-input",
        path,
        `metadata "${k}" is ${typeof v}; safetensors metadata values must be strings (JSON.stringify it).`,
      );
    }
  }
  return Object.fromEntries(Object.entries(metadata));
}

function isIterable(v: unknown): v is Iterable<readonly [string, WritableTensor]> {
  return typeof (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] === "function";
}
