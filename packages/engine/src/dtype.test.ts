import { describe, expect, it } from "vitest";
import { DTYPE_BYTES, numel, SAFETENSORS_DTYPES } from "./dtype.js";

describe("dtype", () => {
  it("maps every safetensors dtype to a known byte size", () => {
    for (const [name, dtype] of Object.entries(SAFETENSORS_DTYPES)) {
      expect(DTYPE_BYTES[dtype], name).toBeGreaterThan(0);
    }
    expect(DTYPE_BYTES[SAFETENSORS_DTYPES.BF16]).toBe(2);
  });
  it("counts elements", () => {
    expect(numel([])).toBe(1);
    expect(numel([2, 3, 4])).toBe(24);
    expect(numel([5, 0])).toBe(0);
  });
});
