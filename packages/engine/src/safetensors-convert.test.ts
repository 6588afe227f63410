import { describe, expect, it } from "vitest";
import {
  bfloat16BitsToFloat32,
  bfloat16ToFloat32,
  float16BitsToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToBfloat16Bits,
  float32ToFloat16,
  float32ToFloat16Bits,
} from "./safetensors-convert.js";

/** The float32 whose IEEE bits are `bits` (test-side, independent of the code under test). */
function f32(bits: number): number {
  const v = new DataView(new ArrayBuffer(4));
  v.setUint32(0, bits >>> 0);
  return v.getFloat32(0);
}

describe("bfloat16", () => {
  it("keeps the high 16 bits of exactly representable values", () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2)).toBe(0xc000);
    expect(float32ToBfloat16Bits(3.140625)).toBe(0x4049);
    expect(float32ToBfloat16Bits(-0)).toBe(0x8000);
    expect(float32ToBfloat16Bits(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(float32ToBfloat16Bits(Number.NEGATIVE_INFINITY)).toBe(0xff80);
  });
  it("rounds to nearest with ties to even", () => {
    // 0x3f80_8000 lies exactly between 0x3f80 and 0x3f81: the even one wins.
    expect(float32ToBfloat16Bits(f32(0x3f808000))).toBe(0x3f80);
    // 0x3f81_8000 lies between 0x3f81 and 0x3f82: again the even one.
    expect(float32ToBfloat16Bits(f32(0x3f818000))).toBe(0x3f82);
    expect(float32ToBfloat16Bits(f32(0x3f808001))).toBe(0x3f81);
    expect(float32ToBfloat16Bits(f32(0x3f807fff))).toBe(0x3f80);
    expect(float32ToBfloat16Bits(f32(0xbf80c000))).toBe(0xbf81);
    // The largest float32 rounds up past bfloat16's largest finite value, to infinity.
    expect(float32ToBfloat16Bits(f32(0x7f7fffff))).toBe(0x7f80);
  });
  it("keeps NaN a NaN, even when rounding would carry into the exponent", () => {
    expect(float32ToBfloat16Bits(Number.NaN) & 0x7fc0).toBe(0x7fc0);
    expect(float32ToBfloat16Bits(f32(0x7f800001))).toBe(0x7fc0);
    expect(float32ToBfloat16Bits(f32(0x7fffffff))).toBe(0x7fff);
  });
  it("widens exactly", () => {
    expect(bfloat16BitsToFloat32(0x3f80)).toBe(1);
    expect(bfloat16BitsToFloat32(0xc049)).toBe(-3.140625);
    expect(bfloat16BitsToFloat32(0x0001)).toBe(f32(0x00010000));
    expect(Object.is(bfloat16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(bfloat16BitsToFloat32(0x7fc0)).toBeNaN();
  });
  it("round-trips every non-NaN bit pattern and converts arrays like scalars", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = bfloat16ToFloat32(all);
    const back = float32ToBfloat16(wide);
    const wrong: number[] = [];
    for (let b = 0; b < 65536; b++) {
      if (Number.isNaN(wide[b])) continue;
      if (back[b] !== b || wide[b] !== bfloat16BitsToFloat32(b)) wrong.push(b);
    }
    expect(wrong).toEqual([]);
  });
});

describe("float16", () => {
  it("converts known values to the bit patterns of IEEE half precision", () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(2 ** -14)).toBe(0x0400);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(float32ToFloat16Bits(Math.fround(0.1))).toBe(0x2e66);
    expect(float32ToFloat16Bits(Math.fround(1 / 3))).toBe(0x3555);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    const nan = float32ToFloat16Bits(Number.NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
  });
  it("rounds to nearest with ties to even, including at the edges", () => {
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie between 0x3c00 and 0x3c01
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie between 0x3c01 and 0x3c02
    expect(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // tie with the next step: rounds to infinity
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2
    expect(float32ToFloat16Bits(2 ** -26)).toBe(0x0000);
    expect(float32ToFloat16Bits(-(2 ** -30))).toBe(0x8000);
    // Halfway between the largest subnormal (0x03ff) and the smallest normal (0x0400).
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400);
  });
  it("widens known bit patterns exactly", () => {
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(float16BitsToFloat32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(float16BitsToFloat32(0x7e00)).toBeNaN();
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
  });
  it("round-trips every non-NaN bit pattern and converts arrays like scalars", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = float16ToFloat32(all);
    const back = float32ToFloat16(wide);
    const wrong: number[] = [];
    for (let b = 0; b < 65536; b++) {
      if (Number.isNaN(wide[b])) continue;
      if (back[b] !== b || wide[b] !== float16BitsToFloat32(b)) wrong.push(b);
    }
    expect(wrong).toEqual([]);
  });
  it("picks the nearest half-precision neighbour of random floats", () => {
    // Nearest-ness checked in float64 against the neighbours, independently of the bit tricks.
    let seed = 12345;
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const wrong: number[] = [];
    for (let i = 0; i < 20000; i++) {
      const x = Math.fround((rand() - 0.5) * 2 ** (rand() * 40 - 26));
      const h = float32ToFloat16Bits(x);
      const err = Math.abs(float16BitsToFloat32(h) - x);
      for (const n of [h - 1, h + 1]) {
        if ((n & 0x7fff) >= 0x7c00 || ((n ^ h) & 0x8000) !== 0) continue;
        if (err > Math.abs(float16BitsToFloat32(n) - x)) wrong.push(x);
      }
    }
    expect(wrong).toEqual([]);
  });
});
