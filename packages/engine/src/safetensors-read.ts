import { type FileHandle, open } from "node:fs/promises";
import { endianness } from "node:os";
import { numel } from "./dtype.js";
import { bfloat16ToFloat32, float16ToFloat32 } from "./safetensors-convert.js";
import { SafetensorsError } from "./safetensors-error.js";
import type { ExternalTensorRef } from "./safetensors-header.js";

/** A tensor's elements in the typed array that holds its dtype; float16 and bfloat16 as raw Uint16 bits, bool as 0/1 bytes. */
export type TensorArray = Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

// fs reads are capped near 2 GiB per call; stay well below.
const MAX_CHUNK = 1 << 30;

/** Safetensors data is little-endian and read by reinterpreting bytes, so a big-endian host would get garbage. */
export function assertLittleEndian(path: string): void {
  if (endianness() !== "LE") {
    throw new SafetensorsError(
      "unsupported",
      path,
      "this machine is big-endian; safetensors I/O needs little-endian.",
    );
  }
}

/**
 * Reads `buffer.length` bytes at `position`, in chunks, or throws a typed error if the file ends
 * first (it may have been truncated after its header was checked).
 */
export async function readExactly(
  handle: FileHandle,
  buffer: Uint8Array,
  position: number,
  path: string,
  tensor?: string,
): Promise<void> {
  for (let done = 0; done < buffer.length; ) {
    const want = Math.min(buffer.length - done, MAX_CHUNK);
    const { bytesRead } = await handle.read(buffer, done, want, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(
        "truncated",
        path,
        `file ends at byte ${position + done}, before the ${buffer.length} bytes expected from ${position}.`,
        tensor === undefined ? {} : { tensor },
      );
    }
    done += bytesRead;
  }
}

/** Opens a file for reading, turning a failure into a SafetensorsError that names it. */
export async function openForRead(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (cause) {
    throw new SafetensorsError("io", path, `cannot open (${(cause as Error).message}).`, { cause });
  }
}

/** The raw bytes of a tensor, read at its offset without touching the rest of the file. */
export async function readTensorBytes(ref: ExternalTensorRef & { name?: string }): Promise<Uint8Array> {
  const bytes = new Uint8Array(ref.length);
  const handle = await openForRead(ref.path);
  try {
    await readExactly(handle, bytes, ref.offset, ref.path, ref.name);
  } finally {
    await handle.close();
  }
  return bytes;
}

/** A tensor's elements in the typed array of its dtype (see TensorArray). */
export async function readTensorData(ref: ExternalTensorRef & { name?: string }): Promise<TensorArray> {
  assertLittleEndian(ref.path);
  return viewAs(ref, await readTensorBytes(ref));
}

/** A floating-point tensor widened (or for float64, narrowed) to float32. */
export async function readTensorFloat32(ref: ExternalTensorRef & { name?: string }): Promise<Float32Array> {
  assertLittleEndian(ref.path);
  if (
    ref.dtype === "float32" ||
    ref.dtype === "float16" ||
    ref.dtype === "bfloat16" ||
    ref.dtype === "float64"
  ) {
    return toFloat32(ref, await readTensorBytes(ref));
  }
  throw new SafetensorsError(
    "unsupported",
    ref.path,
    `is ${ref.dtype}, not a floating-point dtype; read it with readTensorData instead.`,
    ref.name === undefined ? {} : { tensor: ref.name },
  );
}

function viewAs(ref: ExternalTensorRef, bytes: Uint8Array): TensorArray {
  // readTensorBytes allocates a fresh, zero-offset buffer, so every view below is aligned.
  const n = numel(ref.shape);
  switch (ref.dtype) {
    case "float32":
      return new Float32Array(bytes.buffer, 0, n);
    case "float64":
      return new Float64Array(bytes.buffer, 0, n);
    case "float16":
    case "bfloat16":
      return new Uint16Array(bytes.buffer, 0, n);
    case "int32":
      return new Int32Array(bytes.buffer, 0, n);
    case "int64":
      return new BigInt64Array(bytes.buffer, 0, n);
    case "uint8":
    case "bool":
      return bytes;
  }
}

function toFloat32(ref: ExternalTensorRef, bytes: Uint8Array): Float32Array {
  const n = numel(ref.shape);
  switch (ref.dtype) {
    case "float16":
      return float16ToFloat32(new Uint16Array(bytes.buffer, 0, n));
    case "bfloat16":
      return bfloat16ToFloat32(new Uint16Array(bytes.buffer, 0, n));
    case "float64":
      return Float32Array.from(new Float64Array(bytes.buffer, 0, n));
    default:
      return new Float32Array(bytes.buffer, 0, n);
  }
}
