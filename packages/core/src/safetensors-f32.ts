// Minimal F32-only safetensors writer and reader for checkpoints.
// TODO(engine): replace with @edit-r1/engine's safetensors read/write once it is exported.
import { EditR1Error } from "./errors.js";
import type { ParamSet } from "./params.js";

export class SafetensorsFormatError extends EditR1Error {}

/** Encodes named float32 tensors (flat, shape [n] unless given) as a safetensors file. */
export function encodeSafetensorsF32(
  tensors: ParamSet,
  options: { shapes?: Record<string, number[]>; metadata?: Record<string, string> } = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (options.metadata) header.__metadata__ = options.metadata;
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    const data = tensors[name]!;
    const shape = options.shapes?.[name] ?? [data.length];
    if (shape.reduce((a, b) => a * b, 1) !== data.length)
      throw new SafetensorsFormatError(
        `tensor ${name}: shape [${shape}] does not hold ${data.length} values`,
      );
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  // The data section starts 8-byte aligned, padded with spaces as the format allows.
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const name of names) {
    const data = tensors[name]!;
    const bytes = new Uint8Array(data.byteLength);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
    out.set(bytes, at);
    at += bytes.length;
  }
  return out;
}

export interface DecodedSafetensors {
  tensors: ParamSet;
  shapes: Record<string, number[]>;
  metadata: Record<string, string>;
}

/** Decodes a safetensors file whose tensors are all F32; `source` names the file in errors. */
export function decodeSafetensorsF32(bytes: Uint8Array, source = "safetensors data"): DecodedSafetensors {
  if (bytes.length < 8) throw new SafetensorsFormatError(`${source}: too short for a safetensors header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.length)
    throw new SafetensorsFormatError(`${source}: header length ${headerLen} runs past the end of the file`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLen)).toString("utf8"));
  } catch (e) {
    throw new SafetensorsFormatError(`${source}: header is not JSON (${(e as Error).message})`);
  }
  const base = 8 + headerLen;
  const tensors: ParamSet = {};
  const shapes: Record<string, number[]> = {};
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = info as unknown as Record<string, string>;
      continue;
    }
    if (info.dtype !== "F32")
      throw new SafetensorsFormatError(
        `${source}: tensor ${name} is ${info.dtype}; this reader handles F32 only`,
      );
    const [begin, end] = info.data_offsets;
    if (end < begin || base + end > bytes.length || (end - begin) % 4 !== 0)
      throw new SafetensorsFormatError(`${source}: tensor ${name} has bad data offsets [${begin}, ${end}]`);
    const n = (end - begin) / 4;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(base + begin + i * 4, true);
    tensors[name] = out;
    shapes[name] = info.shape;
  }
  return { tensors, shapes, metadata };
}
