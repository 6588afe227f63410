import { openSafetensors } from "@edit-r1/engine";

/** Tensors by name, each as float32 with its shape. */
export type Float32Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Every tensor of a safetensors file as float32, held in memory: floats widened or narrowed, integers and
 * booleans (e.g. an int64 attention mask) converted by value.
 */
export async function readAllFloat32(path: string): Promise<Float32Tensors> {
  const ckpt = await openSafetensors(path);
  const out: Float32Tensors = new Map();
  for (const name of ckpt.names()) {
    const info = ckpt.get(name);
    const data = /^(?:int|uint|bool)/.test(info.dtype)
      ? Float32Array.from(await ckpt.read(name), Number)
      : await ckpt.readFloat32(name);
    out.set(name, { shape: [...info.shape], data });
  }
  return out;
}
