import { describe, expect, it } from "vitest";
import { crc32, encodePng } from "./encode-png.js";
import { ImageMismatchError } from "./errors.js";
import { Rng } from "./rng.js";
import { decodeSimplePng } from "./test-decode-png.js";

describe("crc32", () => {
  it("matches the published check values", () => {
    // "123456789" → 0xCBF43926 is the standard CRC-32 check value; every PNG's IEND CRC is 0xAE426082.
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    expect(crc32(new TextEncoder().encode("IEND"))).toBe(0xae426082);
  });
});

describe("encodePng", () => {
  it("round-trips random pixels losslessly", () => {
    const rng = new Rng(3);
    const width = 7;
    const height = 5;
    const data = new Uint8Array(width * height * 3).map(() => rng.int(0, 256));
    const png = encodePng({ width, height, data });
    const back = decodeSimplePng(png, crc32);
    expect(back.width).toBe(width);
    expect(back.height).toBe(height);
    expect(Array.from(back.data)).toEqual(Array.from(data));
  });
  it("rejects malformed images", () => {
    expect(() => encodePng({ width: 2, height: 2, data: new Uint8Array(11) })).toThrow(ImageMismatchError);
    expect(() => encodePng({ width: 0, height: 2, data: new Uint8Array(0) })).toThrow(ImageMismatchError);
  });
});
