import { SafetensorsError } from "./safetensors-error.js";
import {
  MAX_SAFETENSORS_HEADER_BYTES,
  parseSafetensorsHeader,
  type SafetensorsTensorInfo,
} from "./safetensors-header.js";
import { openForRead, readExactly } from "./safetensors-read.js";
import { SafetensorsTensors } from "./safetensors-tensors.js";

export { describeSome } from "./safetensors-tensors.js";

export interface OpenSafetensorsOptions {
  /** Refuse headers longer than this many bytes (default MAX_SAFETENSORS_HEADER_BYTES). */
  maxHeaderBytes?: number;
}

/**
 * One .safetensors file whose header has been read and validated. Only the header is held in
 * memory; tensor data is read on demand at its offset, so files of any size (beyond 4 GiB too) are fine.
 */
export class SafetensorsFile extends SafetensorsTensors {
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
    super();
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

  /** Sum of all tensors' byte lengths. */
  get dataBytes(): number {
    return this.size - 8 - this.headerLength;
  }
}
