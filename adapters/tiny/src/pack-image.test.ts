import { describe, expect, it } from "vitest";
import { TinyAdapterError } from "./errors.js";
import { packImage, unpackImage } from "./pack-image.js";

function randomImage(width: number, height: number, seed: number) {
  const data = new Uint8Array(width * height * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = s >>> 24;
  }
  return { width, height, data };
}

describe("packImage / unpackImage", () => {
  it("round-trips every byte", () => {
    const image = randomImage(32, 32, 7);
    const packed = packImage(image);
    expect(packed.length).toBe(32 * 32 * 3);
    expect(unpackImage(packed, 32, 32).data).toEqual(image.data);
    const wide = randomImage(16, 4, 3);
    expect(unpackImage(packImage(wide), 16, 4).data).toEqual(wide.data);
  });

  it("uses FLUX's 2×2 packing: token (r, c), channel colour·4 + py·2 + px, values in [-1, 1]", () => {
    const image = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
    // Pixel (y 5, x 2), green = 255: token row 2, column 1; py 1, px 0; channel 1·4 + 2 + 0 = 6.
    image.data[(5 * 32 + 2) * 3 + 1] = 255;
    const packed = packImage(image);
    const at = (2 * 16 + 1) * 12 + 6;
    expect(packed[at]).toBe(1);
    expect(packed.filter((v) => v !== -1)).toEqual(Float32Array.of(1));
  });

  it("clamps out-of-range values and maps NaN to grey when unpacking", () => {
    const tokens = new Float32Array(2 * 2 * 3).fill(3);
    tokens[0] = -7;
    tokens[1] = Number.NaN;
    const { data } = unpackImage(tokens, 2, 2);
    // Token channel 0 is red at (0, 0); channel 1 is red at (0, 1).
    expect(data[0]).toBe(0);
    expect(data[3]).toBe(128);
    expect(data[1]).toBe(255);
  });

  it("rejects sizes that cannot be packed", () => {
    expect(() => packImage(randomImage(31, 32, 1))).toThrow(TinyAdapterError);
    expect(() => unpackImage(new Float32Array(10), 32, 32)).toThrow(/needs 3072/);
  });
});
