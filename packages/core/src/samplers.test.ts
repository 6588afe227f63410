import { describe, expect, it } from "vitest";
import { DpmSolverPlusPlus2MSampler, EulerSampler, HeunSampler, samplerByName } from "./samplers.js";
import type { Sampler, VelocityFn } from "./types.js";

// dx/dσ = cos(σ)·x has the solution x(σ) = x(1)·exp(sin σ − sin 1).
const field: VelocityFn = (x, sigma) => x.map((v) => Math.cos(sigma) * v);
const exact = (x1: number) => x1 * Math.exp(-Math.sin(1));
const uniform = (n: number) => Array.from({ length: n + 1 }, (_, i) => 1 - i / n);

const Float64ToF32 = (v: number) => Float32Array.from([v]);

async function error(sampler: Sampler, steps: number): Promise<number> {
  // Float32 latents limit accuracy to ~1e-7; the step counts keep errors well above that.
  const { x0 } = await sampler.sample(Float32Array.from([1.5]), uniform(steps), field);
  return Math.abs(x0[0]! - exact(1.5));
}

async function observedOrder(sampler: Sampler): Promise<number> {
  const e1 = await error(sampler, 8);
  const e2 = await error(sampler, 16);
  return Math.log2(e1 / e2);
}

describe("samplers", () => {
  it("Euler converges with order 1", async () => {
    const p = await observedOrder(new EulerSampler());
    expect(p).toBeGreaterThan(0.85);
    expect(p).toBeLessThan(1.15);
  });

  it("Heun converges with order 2", async () => {
    const p = await observedOrder(new HeunSampler());
    expect(p).toBeGreaterThan(1.8);
    expect(p).toBeLessThan(2.3);
  });

  it("DPM-Solver++(2M) converges with at least order 2 away from the endpoints", async () => {
    // λ = log((1 − σ)/σ) is infinite at σ = 1 and σ = 0, so the order shows on an inner interval.
    const grid = (n: number) => Array.from({ length: n + 1 }, (_, i) => 0.9 - (0.8 * i) / n);
    const target = 1.5 * Math.exp(Math.sin(0.1) - Math.sin(0.9));
    const err = async (n: number) => {
      const { x0 } = await new DpmSolverPlusPlus2MSampler().sample(Float64ToF32(1.5), grid(n), field);
      return Math.abs(x0[0]! - target);
    };
    // Observed orders run above 2 here (the first-order end steps partly cancel); a first-order bug gives ~1.
    const e = [await err(8), await err(16), await err(32)];
    expect(Math.log2(e[0]! / e[1]!)).toBeGreaterThan(1.8);
    expect(Math.log2(e[1]! / e[2]!)).toBeGreaterThan(1.8);
  });

  it("keeps the trajectory when asked, starting at the noise", async () => {
    const noise = Float32Array.from([0.3, -0.2]);
    const r = await new HeunSampler().sample(noise, uniform(3), field, { keepTrajectory: true });
    expect(r.trajectory!.length).toBe(4);
    expect(Array.from(r.trajectory![0]!)).toEqual(Array.from(noise));
    expect(Array.from(r.trajectory![3]!)).toEqual(Array.from(r.x0));
  });

  it("rejects schedules that do not decrease and velocities of the wrong size", async () => {
    const s = new EulerSampler();
    await expect(s.sample(Float32Array.from([1]), [1, 1, 0], field)).rejects.toThrow(/decrease strictly/);
    await expect(s.sample(Float32Array.from([1]), [1], field)).rejects.toThrow(/at least 2/);
    await expect(s.sample(Float32Array.from([1, 2]), [1, 0], () => new Float32Array(1))).rejects.toThrow(
      /velocity at step 0 has 1 values/,
    );
  });

  it("finds samplers by name and rejects unknown ones", () => {
    expect(samplerByName("dpm2").name).toBe("dpm-solver++2m");
    expect(samplerByName("flow").name).toBe("euler");
    expect(() => samplerByName("ddpm")).toThrow(/unknown sampler/);
  });
});
