import { SafetensorsError } from "./safetensors-error.js";
import {
  MAX_SAFETENSORS_HEADER_BYTES,
  parseSafetensorsHeader,
  type SafetensorsTensorInfo,
} from "./safetensors-header.js";
import {
  openForRead,
  readExactly,
  readTensorBytes,
  readTensorData,
  readTensorFloat32,
  type TensorArray,
} from "./safetensors-read.js";

export interface OpenSafetensorsOptions {
  /** Refuse headers longer than this many bytes (default MAX_SAFETENSORS_HEADER_BYTES). */
  maxHeaderBytes?: number;
}

/**
 * One .safetensors file whose header has been read and validated. Only the header is held in
 * memory; tensor data is read on demand at its offset, so files of any size (beyond 4 GiB too) are fine.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly size: number;
  readonly headerLength: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors by name, in file order. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;

  private constructor(
    path: string,
    size: number,
    headerLength: number,
    metadata: Record<string, string>,
    tensors: SafetensorsTensorInfo[],
  ) {
    this.path = path;
    this.size = size;
    this.headerLength = headerLength;
    this.metadata = metadata;
    this.tensors = new Map(tensors.map((t) => [t.name, t]));
  }

  /** Reads and validates the header of `path`; throws SafetensorsError naming the file (and tensor) at fault. */
  static async open(path: string, options: OpenSafetensorsOptions = {}): Promise<SafetensorsFile> {
    const maxHeader = options.maxHeaderBytes ?? MAX_SAFETENSORS_HEADER_BYTES;
    const handle = await openForRead(path);
    try {
      const { size } = await handle.stat();
      if (size < 8) {
        throw new SafetensorsError(
          "truncated",
          path,
          `is ${size} bytes, too short for the 8-byte header length.`,
        );
      }
      const prefix = new Uint8Array(8);
      await readExactly(handle, prefix, 0, path);
      const declared = new DataView(prefix.buffer).getBigUint64(0, true);
      if (declared > BigInt(size - 8)) {
        throw new SafetensorsError(
          "truncated",
          path,
          `declares a header of ${declared} bytes but only ${size - 8} follow the length prefix.`,
        );
      }
      const headerLength = Number(declared);
      if (headerLength > maxHeader) {
        throw new SafetensorsError(
          "header-too-large",
          path,
          `declares a header of ${headerLength} bytes, more than the ${maxHeader}-byte limit.`,
        );
      }
      const json = new Uint8Array(headerLength);
      await readExactly(handle, json, 8, path);
      const header = parseSafetensorsHeader(json, { path, headerLength, fileSize: size });
      return new SafetensorsFile(path, size, headerLength, header.metadata, header.tensors);
    } finally {
      await handle.close();
    }
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor's location and type, usable as an ExternalTensorRef; throws if absent. */
  get(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) {
      throw new SafetensorsError(
        "missing-tensor",
        this.path,
        `has no tensor "${name}" (it has ${this.tensors.size}${describeSome(this.names())}).`,
        { tensor: name },
      );
    }
    return info;
  }

  /** Sum of all tensors' byte lengths. */
  get dataBytes(): number {
    return this.size - 8 - this.headerLength;
  }

  readBytes(name: string): Promise<Uint8Array> {
    return readTensorBytes(this.get(name));
  }

  read(name: string): Promise<TensorArray> {
    return readTensorData(this.get(name));
  }

  readFloat32(name: string): Promise<Float32Array> {
    return readTensorFloat32(this.get(name));
  }
}

/** ", e.g. a, b, c" for error messages, so a typo in a key is easy to spot. */
export function describeSome(names: readonly string[]): string {
  if (names.length === 0) return "";
  const shown = names.slice(0, 5).map((n) => `"${n}"`);
  return `, e.g. ${shown.join(", ")}${names.length > 5 ? ", …" : ""}`;
}
