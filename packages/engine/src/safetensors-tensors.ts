import { SafetensorsError } from "./safetensors-error.js";
import type { SafetensorsTensorInfo } from "./safetensors-header.js";
import { readTensorBytes, readTensorData, readTensorFloat32, type TensorArray } from "./safetensors-read.js";

/**
 * Named tensors whose bytes live in .safetensors files: lookup by name and reads at the recorded offsets.
 * A single file and a sharded checkpoint are both this, differing only in how the table is built.
 */
export abstract class SafetensorsTensors {
  /** The path that was opened, named in errors. */
  abstract readonly path: string;
  abstract readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;

  /** Tensor names in storage order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor's location (file, absolute offset, length) and type, usable as an ExternalTensorRef; throws if absent. */
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
