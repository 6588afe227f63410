import { describe, expect, it } from "vitest";
import { Rng } from "./rng.js";

describe("Rng", () => {
  it("is deterministic from a seed and differs across seeds", () => {
    const r1 = new Rng(7);
    const r2 = new Rng(7);
    const r3 = new Rng(8);
    const s1 = [r1.next(), r1.next(), r1.next()];
    expect([r2.next(), r2.next(), r2.next()]).toEqual(s1);
    expect([r3.next(), r3.next(), r3.next()]).not.toEqual(s1);
  });
  it("draws integers in range", () => {
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const v = r.int(3, 9);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThan(9);
    }
  });
});
