import { ConfigError, ShapeError } from "./errors.js";
import type { SampleResult, Sampler, VelocityFn } from "./types.js";

function checkSchedule(name: string, noise: Float32Array, sigmas: readonly number[]): void {
  if (sigmas.length < 2)
    throw new ConfigError(
      `${name}: the sigma schedule needs at least 2 values (start and terminal), got ${sigmas.length}`,
    );
  for (let i = 1; i < sigmas.length; i++) {
    if (!(sigmas[i]! < sigmas[i - 1]!))
      throw new ConfigError(
        `${name}: sigmas must decrease strictly, but sigmas[${i - 1}] = ${sigmas[i - 1]} and sigmas[${i}] = ${sigmas[i]}`,
      );
  }
  if (sigmas[0]! > 1 || sigmas[sigmas.length - 1]! < 0)
    throw new ConfigError(
      `${name}: sigmas must lie in [0, 1], got ${sigmas[0]} … ${sigmas[sigmas.length - 1]}`,
    );
  if (noise.length === 0) throw new ShapeError(`${name}: the noise tensor is empty`);
}

async function callVelocity(
  name: string,
  velocity: VelocityFn,
  x: Float32Array,
  sigma: number,
  step: number,
): Promise<Float32Array> {
  const v = await velocity(x, sigma, step);
  if (v.length !== x.length)
    throw new ShapeError(
      `${name}: the velocity at step ${step} has ${v.length} values, the latent has ${x.length}`,
    );
  return v;
}

/** Deterministic Euler on the flow ODE: x ← x + (σ_next − σ)·v. Edit-R1's `flow` solver with eta 0. */
export class EulerSampler implements Sampler {
  readonly name = "euler";

  async sample(
    noise: Float32Array,
    sigmas: readonly number[],
    velocity: VelocityFn,
    options?: { keepTrajectory?: boolean },
  ): Promise<SampleResult> {
    checkSchedule(this.name, noise, sigmas);
    let x = Float32Array.from(noise);
    const trajectory = options?.keepTrajectory ? [Float32Array.from(x)] : undefined;
    for (let i = 0; i + 1 < sigmas.length; i++) {
      const v = await callVelocity(this.name, velocity, x, sigmas[i]!, i);
      const dt = sigmas[i + 1]! - sigmas[i]!;
      const next = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) next[k] = x[k]! + dt * v[k]!;
      x = next;
      trajectory?.push(Float32Array.from(x));
    }
    return trajectory ? { x0: x, trajectory } : { x0: x };
  }
}

/** log(α/σ) on the rectified-flow path α = 1 − σ; −∞ at σ = 1 and +∞ at σ = 0. */
function lambdaOf(sigma: number): number {
  return Math.log(1 - sigma) - Math.log(sigma);
}

/**
 * Deterministic multistep DPM-Solver++(2M) in data (x0) prediction, as Edit-R1 rolls out.
 * The first and the last step are first-order DDIM (the last lands on σ = 0 and returns x̂0). When the
 * schedule starts at σ = 1, step 1's previous λ is −∞, so its second-order correction vanishes exactly
 * as in the reference; true second-order steps begin at step 2.
 */
export class DpmSolverPlusPlus2MSampler implements Sampler {
  readonly name = "dpm-solver++2m";

  async sample(
    noise: Float32Array,
    sigmas: readonly number[],
    velocity: VelocityFn,
    options?: { keepTrajectory?: boolean },
  ): Promise<SampleResult> {
    checkSchedule(this.name, noise, sigmas);
    const n = sigmas.length - 1;
    let x = Float32Array.from(noise);
    const trajectory = options?.keepTrajectory ? [Float32Array.from(x)] : undefined;
    let prevX0: Float32Array | null = null;
    for (let i = 0; i < n; i++) {
      const s = sigmas[i]!;
      const t = sigmas[i + 1]!;
      const v = await callVelocity(this.name, velocity, x, s, i);
      const x0 = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) x0[k] = x[k]! - s * v[k]!;
      const next = new Float32Array(x.length);
      if (prevX0 === null || i === n - 1) {
        // DDIM with eta 0: keep the implied noise, move x̂0 to the next noise level.
        for (let k = 0; k < x.length; k++) {
          const eps = (x[k]! - (1 - s) * x0[k]!) / s;
          next[k] = (1 - t) * x0[k]! + t * eps;
        }
      } else {
        const lambdaT = lambdaOf(t);
        const lambdaS0 = lambdaOf(s);
        const lambdaS1 = lambdaOf(sigmas[i - 1]!);
        const h = lambdaT - lambdaS0;
        const r0 = (lambdaS0 - lambdaS1) / h;
        const ratio = t / s;
        const c = (1 - t) * (Math.exp(-h) - 1);
        const invR0 = 1 / r0;
        for (let k = 0; k < x.length; k++) {
          const d1 = invR0 * (x0[k]! - prevX0[k]!);
          next[k] = ratio * x[k]! - c * x0[k]! - 0.5 * c * d1;
        }
      }
      prevX0 = x0;
      x = next;
      trajectory?.push(Float32Array.from(x));
    }
    return trajectory ? { x0: x, trajectory } : { x0: x };
  }
}

/**
 * Heun's method (explicit trapezoid) on the flow ODE: second order, two velocity calls per step,
 * including the step onto σ = 0 (flow-matching velocities are defined there).
 */
export class HeunSampler implements Sampler {
  readonly name = "heun";

  async sample(
    noise: Float32Array,
    sigmas: readonly number[],
    velocity: VelocityFn,
    options?: { keepTrajectory?: boolean },
  ): Promise<SampleResult> {
    checkSchedule(this.name, noise, sigmas);
    let x = Float32Array.from(noise);
    const trajectory = options?.keepTrajectory ? [Float32Array.from(x)] : undefined;
    for (let i = 0; i + 1 < sigmas.length; i++) {
      const s = sigmas[i]!;
      const t = sigmas[i + 1]!;
      const dt = t - s;
      const v1 = await callVelocity(this.name, velocity, x, s, i);
      const predicted = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) predicted[k] = x[k]! + dt * v1[k]!;
      const v2 = await callVelocity(this.name, velocity, predicted, t, i);
      const next = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) next[k] = x[k]! + 0.5 * dt * (v1[k]! + v2[k]!);
      x = next;
      trajectory?.push(Float32Array.from(x));
    }
    return trajectory ? { x0: x, trajectory } : { x0: x };
  }
}

/** A sampler by name: "euler" (alias "flow"), "dpm-solver++2m" (alias "dpm2"), "heun". */
export function samplerByName(name: string): Sampler {
  switch (name) {
    case "euler":
    case "flow":
      return new EulerSampler();
    case "dpm-solver++2m":
    case "dpm2":
      return new DpmSolverPlusPlus2MSampler();
    case "heun":
      return new HeunSampler();
    default:
      throw new ConfigError(
        `unknown sampler ${JSON.stringify(name)}: use "euler", "dpm-solver++2m" or "heun"`,
      );
  }
}
