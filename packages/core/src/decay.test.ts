import { describe, expect, it } from "vitest";
import { emaDecay, oldPolicyDecay } from "./decay.js";

describe("oldPolicyDecay", () => {
  it("follows decay type 1", () => {
    expect(oldPolicyDecay(0)).toBe(0);
    expect(oldPolicyDecay(100)).toBeCloseTo(0.1, 12);
    expect(oldPolicyDecay(500)).toBe(0.5);
    expect(oldPolicyDecay(10_000)).toBe(0.5);
  });
  it("follows decay type 2", () => {
    expect(oldPolicyDecay(74, 2)).toBe(0);
    expect(oldPolicyDecay(175, 2)).toBeCloseTo(0.75, 12);
    expect(oldPolicyDecay(100_000, 2)).toBe(0.999);
  });
  it("rejects negative steps", () => {
    expect(() => oldPolicyDecay(-1)).toThrow(/non-negative/);
  });
});

describe("emaDecay", () => {
  it("warms up to its maximum", () => {
    expect(emaDecay(0)).toBeCloseTo(0.1, 12);
    expect(emaDecay(1000)).toBe(0.9);
  });
});
