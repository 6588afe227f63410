import { describe, expect, it } from "vitest";
import { AdapterKitError } from "./errors.js";
import { packLatents, unpackLatents } from "./latent-packing.js";

describe("2×2 latent packing", () => {
  // Latent [C=2, h=4, w=6] whose value encodes its own (c, y, x).
  const C = 2;
  const h = 4;
  const w = 6;
  const z = Float32Array.from({ length: C * h * w }, (_, i) => {
    const c = Math.floor(i / (h * w));
    const y = Math.floor((i % (h * w)) / w);
    const x = i % w;
    return c * 100 + y * 10 + x;
  });

  it("puts channel c's patch value (dy, dx) of token (r, q) at feature c·4 + dy·2 + dx", () => {
    const t = packLatents(z, C, h, w);
    expect(t.length).toBe(z.length);
    // Token (r=1, q=2) is index 1·3 + 2 = 5 and covers rows 2–3, columns 4–5.
    const token = 5;
    const feats = Array.from(t.subarray(token * 8, token * 8 + 8));
    expect(feats).toEqual([24, 25, 34, 35, 124, 125, 134, 135]);
    // Token 0 is the top-left patch.
    expect(Array.from(t.subarray(0, 4))).toEqual([0, 1, 10, 11]);
  });

  it("unpacks to the original latent", () => {
    expect(Array.from(unpackLatents(packLatents(z, C, h, w), C, h, w))).toEqual(Array.from(z));
  });

  it("rejects odd sides and wrong sizes", () => {
    expect(() => packLatents(new Float32Array(C * 3 * 6), C, 3, 6)).toThrow(AdapterKitError);
    expect(() => packLatents(new Float32Array(5), C, h, w)).toThrow(/5 values, expected 2×4×6/);
  });
});
