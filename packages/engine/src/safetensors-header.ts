import { DTYPE_BYTES, type DType, SAFETENSORS_DTYPES } from "./dtype.js";
import { SafetensorsError } from "./safetensors-error.js";

/**
 * Where one tensor's bytes live on disk: enough for an ONNX initializer with external data
 * (`location`, `offset`, `length`) to point straight into a .safetensors file.
 */
export interface ExternalTensorRef {
  /** The file that holds the bytes. */
  path: string;
  /** Absolute byte offset in the file: 8 + header length + data_offsets[0]. */
  offset: number;
  /** Byte length: numel(shape) × bytes per element. */
  length: number;
  dtype: DType;
  shape: number[];
}

/** One tensor of a safetensors header, located in its file. */
export interface SafetensorsTensorInfo extends ExternalTensorRef {
  name: string;
  /** The header's own offsets, relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** The `__metadata__` string map (empty when the file has none). */
  metadata: Record<string, string>;
  /** Tensors in file order (ascending offset). */
  tensors: SafetensorsTensorInfo[];
}

/**
 * Headers beyond this are refused before being read: real checkpoints have headers of a few
 * hundred kB, and the Python library draws the same line, so a larger one means a corrupt length.
 */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

export interface ParseHeaderContext {
  /** Named in errors and recorded in each tensor's `path`. */
  path: string;
  /** The header length from the file's first 8 bytes. */
  headerLength: number;
  /** Total size of the file in bytes. */
  fileSize: number;
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const SAFETENSORS_NAMES = Object.keys(SAFETENSORS_DTYPES).join(", ");

/**
 * Parses and validates a safetensors JSON header. Accepts exactly what the Python library accepts
 * (the tensors' data must tile the data section with no gap, overlap or trailing bytes), so a file
 * that passes can be read without any out-of-bounds access.
 */
export function parseSafetensorsHeader(json: Uint8Array, ctx: ParseHeaderContext): SafetensorsHeader {
  const { path } = ctx;
  const dataStart = 8 + ctx.headerLength;
  const dataSize = ctx.fileSize - dataStart;
  if (json.length !== ctx.headerLength || dataSize < 0) {
    throw new SafetensorsError(
      "truncated",
      path,
      `header of ${ctx.headerLength} bytes does not fit in a file of ${ctx.fileSize} bytes.`,
    );
  }
  let text: string;
  try {
    text = decoder.decode(json);
  } catch (cause) {
    throw new SafetensorsError("header-invalid", path, "header is not valid UTF-8.", { cause });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new SafetensorsError(
      "header-invalid",
      path,
      `header is not valid JSON (${(cause as Error).message}).`,
      {
        cause,
      },
    );
  }
  if (!isPlainObject(parsed)) {
    throw new SafetensorsError("header-invalid", path, "header is not a JSON object.");
  }

  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(entry, path);
      continue;
    }
    tensors.push(parseEntry(name, entry, ctx, dataStart, dataSize));
  }

  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let covered = 0;
  let previous: string | undefined;
  for (const t of tensors) {
    const [begin, end] = t.dataOffsets;
    if (begin < covered) {
      throw new SafetensorsError(
        "overlap",
        path,
        `data bytes ${begin}..${end} overlap those of tensor "${previous}" (which end at ${covered}).`,
        { tensor: t.name },
      );
    }
    if (begin > covered) {
      throw new SafetensorsError(
        "out-of-range",
        path,
        `data starts at ${begin} but the previous tensor ends at ${covered}: safetensors data has no gaps.`,
        { tensor: t.name },
      );
    }
    covered = end;
    previous = t.name;
  }
  if (covered !== dataSize) {
    throw new SafetensorsError(
      "out-of-range",
      path,
      `tensors cover ${covered} data bytes but the file has ${dataSize} after the header.`,
    );
  }
  return { metadata, tensors };
}

function parseMetadata(entry: unknown, path: string): Record<string, string> {
  if (!isPlainObject(entry)) {
    throw new SafetensorsError("metadata-invalid", path, "__metadata__ is not a JSON object of strings.");
  }
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        "metadata-invalid",
        path,
        `__metadata__["${k}"] is ${JSON.stringify(v)}, but metadata values must be strings.`,
      );
    }
  }
  // fromEntries, not assignment, so a "__proto__" key stays an ordinary key.
  return Object.fromEntries(Object.entries(entry)) as Record<string, string>;
}

function parseEntry(
  name: string,
  entry: unknown,
  ctx: ParseHeaderContext,
  dataStart: number,
  dataSize: number,
): SafetensorsTensorInfo {
  const path = ctx.path;
  const fail = (code: "tensor-invalid" | "unknown-dtype", detail: string) =>
    new SafetensorsError(code, path, detail, { tensor: name });
  if (!isPlainObject(entry)) throw fail("tensor-invalid", "entry is not a JSON object.");
  const { dtype: rawDtype, shape: rawShape, data_offsets: rawOffsets } = entry;
  if (typeof rawDtype !== "string") throw fail("tensor-invalid", "dtype is missing or not a string.");
  if (!Object.hasOwn(SAFETENSORS_DTYPES, rawDtype)) {
    throw fail("unknown-dtype", `dtype "${rawDtype}" is not supported (supported: ${SAFETENSORS_NAMES}).`);
  }
  const dtype = SAFETENSORS_DTYPES[rawDtype] as DType;
  if (!Array.isArray(rawShape) || !rawShape.every(isNonNegativeInt)) {
    throw fail(
      "tensor-invalid",
      `shape ${JSON.stringify(rawShape)} is not an array of non-negative integers.`,
    );
  }
  const shape = rawShape as number[];
  if (!Array.isArray(rawOffsets) || rawOffsets.length !== 2 || !rawOffsets.every(isNonNegativeInt)) {
    throw fail(
      "tensor-invalid",
      `data_offsets ${JSON.stringify(rawOffsets)} is not a pair of non-negative integers.`,
    );
  }
  const [begin, end] = rawOffsets as [number, number];
  if (end < begin) throw fail("tensor-invalid", `data_offsets [${begin}, ${end}] end before they begin.`);
  if (end > dataSize) {
    throw new SafetensorsError(
      "out-of-range",
      path,
      `data_offsets [${begin}, ${end}] reach past the ${dataSize} data bytes of the file.`,
      { tensor: name },
    );
  }
  const expected = byteLength(shape, DTYPE_BYTES[dtype]);
  if (expected !== end - begin) {
    throw new SafetensorsError(
      "size-mismatch",
      path,
      `${rawDtype} of shape [${shape.join(", ")}] needs ${expected ?? "more than 2^53"} bytes, but data_offsets span ${end - begin}.`,
      { tensor: name },
    );
  }
  return {
    name,
    path,
    offset: dataStart + begin,
    length: end - begin,
    dtype,
    shape: [...shape],
    dataOffsets: [begin, end],
  };
}

/** numel × element size, or undefined when it is not a safe integer. */
function byteLength(shape: readonly number[], elementBytes: number): number | undefined {
  if (shape.includes(0)) return 0;
  let n = elementBytes;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return n;
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
