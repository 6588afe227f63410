import { describe, expect, it } from "vitest";
import { InvalidOptionsError, RequirementParseError } from "./errors.js";
import { generateEdits } from "./generate-edits.js";
import { judgeDistribution, judgeDistributionFromScore, judgeFromRequirement } from "./judge-distribution.js";
import { verify } from "./verify.js";

describe("judgeDistributionFromScore", () => {
  const grid = Array.from({ length: 41 }, (_, i) => i / 40);

  it("is a distribution over 0..5 with matching logprobs", () => {
    for (const s of grid) {
      const d = judgeDistributionFromScore(s);
      expect(d.probs).toHaveLength(6);
      expect(d.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      d.probs.forEach((p, k) => {
        expect(p).toBeGreaterThan(0);
        expect(d.logprobs[k]).toBeCloseTo(Math.log(p), 12);
      });
      expect(d.expected).toBeCloseTo(d.probs.reduce((a, p, k) => a + k * p, 0) / 5, 12);
      expect(d.topLogprobs.map((t) => Number(t.token))[0]).toBe(d.mostLikely);
    }
  });

  it("peaks at the nearest score and its expectation rises with the score", () => {
    let last = -1;
    for (const s of grid) {
      const d = judgeDistributionFromScore(s);
      const nearest = Math.round(5 * s);
      if (Math.abs(5 * s - nearest) < 0.45) expect(d.mostLikely).toBe(nearest); // skip exact ties
      expect(d.expected).toBeGreaterThan(last);
      expect(Math.abs(d.expected - s)).toBeLessThan(0.1);
      last = d.expected;
    }
  });

  it("is sharper with a smaller spread and validates its inputs", () => {
    expect(judgeDistributionFromScore(0.6, { spread: 0.3 }).probs[3]).toBeGreaterThan(
      judgeDistributionFromScore(0.6, { spread: 1 }).probs[3]!,
    );
    expect(() => judgeDistributionFromScore(1.2)).toThrow(InvalidOptionsError);
    expect(() => judgeDistributionFromScore(0.5, { spread: 0 })).toThrow(InvalidOptionsError);
  });
});

describe("judgeDistribution", () => {
  const samples = generateEdits({ seed: 8, count: 16, split: "heldout" });

  it("tracks the verifier on real edits", () => {
    for (const s of samples) {
      const good = judgeDistribution(s.target, s.target, s.source);
      const bad = judgeDistribution(s.source, s.target, s.source);
      expect(good.verifier.score).toBe(1);
      expect(good.mostLikely).toBe(5);
      expect(bad.mostLikely).toBe(0);
      expect(good.expected).toBeGreaterThan(0.9);
      expect(bad.expected).toBeLessThan(0.1);
    }
  });

  it("judges from the requirement text alone like from the images", () => {
    for (const s of samples) {
      const half = s.source.data.slice();
      half.set(s.target.data.subarray(0, half.length / 2));
      const edited = { ...s.source, data: half };
      const fromText = judgeFromRequirement(edited, s.requirement);
      expect(fromText.verifier.score).toBe(verify(edited, s.target, s.source));
      expect(fromText.probs).toEqual(judgeDistribution(edited, s.target, s.source).probs);
    }
    expect(() => judgeFromRequirement(samples[0]!.target, "no tag here")).toThrow(RequirementParseError);
  });
});
