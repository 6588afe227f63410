import { describe, expect, it } from "vitest";
import { Rng } from "./rng.js";

describe("Rng", () => {
  it("is reproducible from a seed and from a saved state", () => {
    const a = new Rng(5);
    a.normal(); // leaves a spare normal pending
    const state = a.getState();
    const next = [a.normal(), a.next(), a.normal()];
    const b = Rng.fromState(JSON.parse(JSON.stringify(state)));
    expect([b.normal(), b.next(), b.normal()]).toEqual(next);
  });

  it("draws standard normals", () => {
    const x = new Rng(1).normals(20000);
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.04);
  });

  it("gives permutations and independent derived streams", () => {
    const p = new Rng(2).permutation(50);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Rng.derive(1, "a").next()).not.toBe(Rng.derive(1, "b").next());
    expect(Rng.derive(1, "a").next()).toBe(Rng.derive(1, "a").next());
  });
});
