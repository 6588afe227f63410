import { describe, expect, it } from "vitest";
import { decodeSafetensorsF32, encodeSafetensorsF32 } from "./safetensors-f32.js";

describe("safetensors (F32)", () => {
  it("round-trips tensors, shapes and metadata with an 8-byte aligned header", () => {
    const bytes = encodeSafetensorsF32(
      { "a.weight": Float32Array.from([1.5, -2, 3, 4, 5, 6]), b: Float32Array.from([Math.PI]) },
      { shapes: { "a.weight": [2, 3] }, metadata: { step: "4" } },
    );
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLen)).toString());
    expect(header["a.weight"]).toEqual({ dtype: "F32", shape: [2, 3], data_offsets: [0, 24] });
    expect(header.b.data_offsets).toEqual([24, 28]);
    expect(new DataView(bytes.buffer).getFloat32(8 + headerLen + 24, true)).toBe(Math.fround(Math.PI));
    const back = decodeSafetensorsF32(bytes);
    expect(Array.from(back.tensors["a.weight"]!)).toEqual([1.5, -2, 3, 4, 5, 6]);
    expect(back.shapes["a.weight"]).toEqual([2, 3]);
    expect(back.metadata).toEqual({ step: "4" });
  });

  it("names the file and the tensor when the data is not F32 or is cut short", () => {
    const header = Buffer.from(JSON.stringify({ x: { dtype: "BF16", shape: [1], data_offsets: [0, 2] } }));
    const bytes = new Uint8Array(8 + header.length + 2);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
    bytes.set(header, 8);
    expect(() => decodeSafetensorsF32(bytes, "w.safetensors")).toThrow(/w.safetensors: tensor x is BF16/);
    expect(() => decodeSafetensorsF32(bytes.subarray(0, 20), "w.safetensors")).toThrow(/runs past the end/);
  });
});
