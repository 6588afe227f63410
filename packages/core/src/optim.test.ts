import { describe, expect, it } from "vitest";
import { AdamW } from "./adamw.js";
import { Ema } from "./ema.js";
import { clipGradNorm, globalNorm, type ParamSet, softUpdate } from "./params.js";

describe("AdamW", () => {
  it("moves each weight by about lr·sign(g) on the first step, after decoupled decay", () => {
    const p: ParamSet = { w: Float32Array.from([1, -2, 0.5]) };
    const opt = new AdamW(p, { lr: 0.1, weightDecay: 0.5 });
    opt.update(p, { w: Float32Array.from([3, -0.001, 10]) });
    // First step: m̂/√v̂ = g/|g| up to eps, so p ← p(1 − lr·wd) − lr·sign(g).
    expect(p.w![0]).toBeCloseTo(1 * 0.95 - 0.1, 5);
    expect(p.w![1]).toBeCloseTo(-2 * 0.95 + 0.1, 4);
    expect(p.w![2]).toBeCloseTo(0.5 * 0.95 - 0.1, 5);
  });

  it("minimises a quadratic", () => {
    const p: ParamSet = { w: Float32Array.from([3, -4]) };
    const opt = new AdamW(p, { lr: 0.05, weightDecay: 0 });
    for (let i = 0; i < 400; i++) opt.update(p, { w: Float32Array.from([2 * p.w![0]!, 2 * p.w![1]!]) });
    expect(Math.abs(p.w![0]!)).toBeLessThan(0.05);
    expect(Math.abs(p.w![1]!)).toBeLessThan(0.05);
  });

  it("resumes exactly from its state", () => {
    const grads = (k: number): ParamSet => ({ w: Float32Array.from([Math.sin(k), Math.cos(k)]) });
    const a: ParamSet = { w: Float32Array.from([1, 2]) };
    const optA = new AdamW(a);
    for (let k = 0; k < 6; k++) optA.update(a, grads(k));
    const b: ParamSet = { w: Float32Array.from([1, 2]) };
    const optB = new AdamW(b);
    for (let k = 0; k < 3; k++) optB.update(b, grads(k));
    const c: ParamSet = { w: Float32Array.from(b.w!) };
    const optC = new AdamW(c);
    optC.loadState(optB.getState());
    for (let k = 3; k < 6; k++) optC.update(c, grads(k));
    expect(Array.from(c.w!)).toEqual(Array.from(a.w!));
  });

  it("rejects gradients of another layout", () => {
    const p: ParamSet = { w: new Float32Array(2) };
    expect(() => new AdamW(p).update(p, { v: new Float32Array(2) })).toThrow(/missing \["w"\]/);
  });
});

describe("clipGradNorm", () => {
  it("scales to the maximum norm and reports the norm before clipping", () => {
    const g: ParamSet = { a: Float32Array.from([3]), b: Float32Array.from([4]) };
    expect(clipGradNorm(g, 1)).toBeCloseTo(5, 6);
    expect(globalNorm(g)).toBeCloseTo(1, 5);
    const small: ParamSet = { a: Float32Array.from([0.3]) };
    clipGradNorm(small, 1);
    expect(small.a![0]).toBeCloseTo(0.3, 7);
  });
});

describe("softUpdate and Ema", () => {
  it("soft-updates the old policy toward θ", () => {
    const old: ParamSet = { w: Float32Array.from([0, 10]) };
    softUpdate(old, { w: Float32Array.from([1, 0]) }, 0.25);
    expect(Array.from(old.w!)).toEqual([0.75, 2.5]);
  });

  it("warms the EMA up: decay 0.1 at step 0, 0.9 later", () => {
    const ema = new Ema({ w: Float32Array.from([0]) });
    expect(ema.update({ w: Float32Array.from([1]) }, 0)).toBeCloseTo(0.1, 12);
    expect(ema.params.w![0]).toBeCloseTo(0.9, 6);
    expect(ema.update({ w: Float32Array.from([0]) }, 100)).toBe(0.9);
    expect(ema.params.w![0]).toBeCloseTo(0.81, 6);
  });
});
