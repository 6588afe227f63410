import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { JudgeConfigError } from "./errors.js";
import { decodeImageDataUrl, encodeImageDataUrl, hashImage, ImageDecodeError } from "./image-data-url.js";
import { patternImage, solidImage } from "./test-helpers.js";

describe("image data URLs", () => {
  it("round-trips PNG losslessly", async () => {
    const img = patternImage(17, 9, 3);
    const url = await encodeImageDataUrl(img, { format: "png" });
    expect(url.startsWith("data:image/png;base64,")).toBe(true);
    const back = await decodeImageDataUrl(url);
    expect(back.width).toBe(17);
    expect(back.height).toBe(9);
    expect(Buffer.from(back.data).equals(Buffer.from(img.data))).toBe(true);
  });
  it("encodes JPEG by default, close to the original", async () => {
    const img = solidImage(16, 16, [200, 40, 90]);
    const url = await encodeImageDataUrl(img);
    expect(url.startsWith("data:image/jpeg;base64,")).toBe(true);
    const back = await decodeImageDataUrl(url);
    for (let i = 0; i < back.data.length; i++)
      expect(Math.abs(back.data[i] - img.data[i])).toBeLessThanOrEqual(4);
  });
  it("shrinks to maxSide keeping the aspect, and never enlarges", async () => {
    const big = await decodeImageDataUrl(
      await encodeImageDataUrl(patternImage(200, 100), { format: "png", maxSide: 50 }),
    );
    expect([big.width, big.height]).toEqual([50, 25]);
    const small = await decodeImageDataUrl(
      await encodeImageDataUrl(patternImage(20, 10), { format: "png", maxSide: 50 }),
    );
    expect([small.width, small.height]).toEqual([20, 10]);
  });
  it("decodes grey and RGBA images to RGB", async () => {
    const grey = await sharp(Buffer.alloc(4 * 3, 77), { raw: { width: 4, height: 3, channels: 1 } })
      .png()
      .toBuffer();
    const g = await decodeImageDataUrl(`data:image/png;base64,${grey.toString("base64")}`);
    expect(g.data.length).toBe(4 * 3 * 3);
    expect(g.data[0]).toBe(77);
    const rgba = await sharp(Buffer.alloc(2 * 2 * 4, 255), { raw: { width: 2, height: 2, channels: 4 } })
      .png()
      .toBuffer();
    expect((await decodeImageDataUrl(`data:image/png;base64,${rgba.toString("base64")}`)).data.length).toBe(
      12,
    );
  });
  it("rejects bad inputs with typed errors", async () => {
    await expect(encodeImageDataUrl({ width: 2, height: 2, data: new Uint8Array(5) })).rejects.toThrow(
      /needs 12/,
    );
    await expect(encodeImageDataUrl(patternImage(2, 2), { quality: 0 })).rejects.toThrow(JudgeConfigError);
    await expect(decodeImageDataUrl("https://example.com/cat.png")).rejects.toThrow(ImageDecodeError);
    await expect(decodeImageDataUrl("data:image/png;base64,AAAA")).rejects.toThrow(/could not be decoded/);
    const url = await encodeImageDataUrl(patternImage(64, 64), { format: "png" });
    await expect(decodeImageDataUrl(url, { maxPixels: 100 })).rejects.toThrow(ImageDecodeError);
  });
  it("hashes size and pixels", () => {
    const a = patternImage(4, 4, 1);
    expect(hashImage(a)).toBe(hashImage(patternImage(4, 4, 1)));
    expect(hashImage(a)).not.toBe(hashImage(patternImage(4, 4, 2)));
    expect(hashImage({ width: 8, height: 2, data: a.data })).not.toBe(hashImage(a));
  });
});
