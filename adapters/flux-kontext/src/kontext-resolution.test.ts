import { describe, expect, it } from "vitest";
import { FluxKontextError } from "./flux-kontext-error.js";
import { kontextInputSize, PREFERRED_KONTEXT_RESOLUTIONS } from "./kontext-resolution.js";

describe("kontextInputSize", () => {
  it("has the 17 preferred resolutions, all multiples of 16 of about one megapixel", () => {
    expect(PREFERRED_KONTEXT_RESOLUTIONS).toHaveLength(17);
    for (const [w, h] of PREFERRED_KONTEXT_RESOLUTIONS) {
      expect(w % 16).toBe(0);
      expect(h % 16).toBe(0);
      expect(Math.abs(w * h - 1024 * 1024) / (1024 * 1024)).toBeLessThan(0.06);
    }
  });

  it("snaps to the resolution of closest aspect ratio (worked out by hand)", () => {
    expect(kontextInputSize(1000, 1000)).toEqual({ width: 1024, height: 1024 });
    // 1920/1080 = 1.778: 1392/752 = 1.851 (off by 0.074) beats 1328/800 = 1.66 (0.118).
    expect(kontextInputSize(1920, 1080)).toEqual({ width: 1392, height: 752 });
    // 600/1200 = 0.5: 720/1456 = 0.4945 is closest.
    expect(kontextInputSize(600, 1200)).toEqual({ width: 720, height: 1456 });
    // Very wide images take the widest entry.
    expect(kontextInputSize(4000, 500)).toEqual({ width: 1568, height: 672 });
  });

  it("floors the input to the multiple before taking its aspect", () => {
    // 31×16 floors to 16×16 (aspect 1), not 1.94.
    expect(
      kontextInputSize(31, 16, {
        resolutions: [
          [16, 16],
          [32, 16],
        ],
        multipleOf: 16,
      }),
    ).toEqual({
      width: 16,
      height: 16,
    });
  });

  it("rejects images smaller than one multiple", () => {
    expect(() => kontextInputSize(10, 40)).toThrow(FluxKontextError);
    expect(() => kontextInputSize(10, 40)).toThrow(/at least 16×16/);
  });
});
