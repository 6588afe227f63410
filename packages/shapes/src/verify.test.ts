import { describe, expect, it } from "vitest";
import { ImageMismatchError, InvalidOptionsError } from "./errors.js";
import { generateEdits } from "./generate-edits.js";
import { COLOR_NAMES, PALETTE } from "./palette.js";
import type { RgbImage } from "./rgb-image.js";
import { Rng } from "./rng.js";
import { DEFAULT_VERIFY_TOLERANCE, verify, verifyDetails } from "./verify.js";

const samples = generateEdits({ seed: 21, count: 40, split: "heldout" });

function pixelsWhere(a: RgbImage, b: RgbImage, differ: boolean): number[] {
  const out: number[] = [];
  for (let p = 0; p < a.width * a.height; p++) {
    const d = [0, 1, 2].some((c) => a.data[3 * p + c] !== b.data[3 * p + c]);
    if (d === differ) out.push(p);
  }
  return out;
}

/** Source with the first `k` of the changed pixels taken from the target. */
function partial(source: RgbImage, target: RgbImage, k: number): RgbImage {
  const data = source.data.slice();
  for (const p of pixelsWhere(source, target, true).slice(0, k))
    data.set(target.data.subarray(3 * p, 3 * p + 3), 3 * p);
  return { ...source, data };
}

describe("verify", () => {
  it("gives a perfect edit 1 and an unchanged image 0", () => {
    for (const s of samples) {
      expect(verify(s.target, s.target, s.source)).toBe(1);
      const unchanged = verifyDetails(s.source, s.target, s.source);
      expect(unchanged.edit).toBe(0);
      expect(unchanged.preserve).toBe(1);
      expect(unchanged.score).toBe(0);
    }
  });

  it("scores partial edits by the fraction done, monotonically", () => {
    for (const s of samples.slice(0, 8)) {
      const n = pixelsWhere(s.source, s.target, true).length;
      let last = -1;
      for (const f of [0, 0.25, 0.5, 0.75, 1]) {
        const k = Math.round(f * n);
        const score = verify(partial(s.source, s.target, k), s.target, s.source);
        expect(score).toBeCloseTo(k / n, 12);
        expect(score).toBeGreaterThanOrEqual(last);
        last = score;
      }
    }
  });

  it("charges damage to pixels that should stay", () => {
    const s = samples[3]!;
    const kept = pixelsWhere(s.source, s.target, false);
    const damaged = s.target.data.slice();
    const spoil = kept.slice(0, Math.floor(kept.length / 10));
    for (const p of spoil) damaged.set([255 - damaged[3 * p]!, 255 - damaged[3 * p + 1]!, 128], 3 * p);
    const r = verifyDetails({ ...s.target, data: damaged }, s.target, s.source);
    expect(r.edit).toBe(1);
    // Inverting a channel of a palette colour moves it by well over twice the tolerance.
    expect(r.preserve).toBeCloseTo(1 - spoil.length / kept.length, 12);
    expect(r.score).toBeLessThan(1);
  });

  it("tolerates small noise and gives partial credit for near misses", () => {
    const s = samples[0]!;
    const rng = new Rng(4);
    const noisy = s.target.data.map((v) => Math.min(255, Math.max(0, v + rng.int(-20, 21))));
    expect(verify({ ...s.target, data: noisy }, s.target, s.source)).toBe(1);
    const off = s.target.data.map((v) => (v >= 128 ? v - 48 : v + 48)); // between tol and 2·tol
    const score = verify({ ...s.target, data: off }, s.target, s.source);
    expect(score).toBeGreaterThan(0);
    expect(score).toBeLessThan(1);
  });

  it("never confuses two palette colours at the default tolerance", () => {
    for (const a of COLOR_NAMES) {
      for (const b of COLOR_NAMES) {
        if (a === b) continue;
        const d = Math.max(...[0, 1, 2].map((c) => Math.abs(PALETTE[a][c]! - PALETTE[b][c]!)));
        expect(d).toBeGreaterThanOrEqual(2 * DEFAULT_VERIFY_TOLERANCE);
      }
    }
  });

  it("rejects mismatched sizes and bad options with typed errors", () => {
    const s = samples[0]!;
    const small = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3) };
    expect(() => verify(small, s.target, s.source)).toThrow(ImageMismatchError);
    expect(() => verify(s.target, s.target, small)).toThrow(ImageMismatchError);
    expect(() => verify(s.target, s.target, s.source, { tolerance: 0 })).toThrow(InvalidOptionsError);
  });
});
