import {
  ALGORITHM_KEYS,
  type AlgorithmKey,
  algorithmCases,
  algorithmFixtureFiles,
  allclose,
  fixturesRoot,
  isAlgorithmKey,
  REGISTRY_FILE,
  relativeL2,
} from "@edit-r1/test-fixtures";
import { describe, expect, it } from "vitest";
import { oldPolicyDecay } from "./decay.js";
import { flowMatchSchedule, flowScheduleConfigFromDiffusers } from "./flow-schedule.js";
import { groupStatistics } from "./group-stats.js";
import { nftLoss } from "./nft-loss.js";
import { samplerByName } from "./samplers.js";

// biome-ignore lint/suspicious/noExplicitAny: fixture cases are untyped JSON
type Case = any;

const toyVelocity = (z: Float32Array, s: number): Float32Array => {
  const out = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) out[i] = z[i]! * (0.5 + s) - 0.3 * Math.cos(3 * z[i]!);
  return out;
};

const nftInput = (c: Case) => ({
  x0: c.x0,
  noise: c.noise,
  t: c.t,
  vTheta: c.v_theta,
  vOld: c.v_old,
  vRef: c.v_ref,
  advantages: c.advantages,
  validMask: c.valid_mask,
  beta: c.beta,
  klWeight: c.kl_weight,
  advClipMax: c.adv_clip_max,
});

/** |a − b| ≤ atol + rtol·|b| everywhere, else fail naming the worst element. */
const expectClose = (
  what: string,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  atol: number,
  rtol: number,
) => {
  const r = allclose(a, b, { atol, rtol });
  expect(r.ok, `${what}: ${r.message}`).toBe(true);
};

/**
 * Samplers run in float32 (unit roundoff 2^-24 ≈ 6e-8), as the reference did, so each step may differ by
 * rounding that accumulates over the steps. Measured on the repository's fixtures (6 and 28 steps, states
 * up to |z| ≈ 2.3): relative L2 per step ≤ 3.1e-7, |diff| ≤ 4.8e-7; on held-out fixtures of 3 to 50 steps:
 * ≤ 6.1e-7 and ≤ 6.3e-7 (the worst element used 0.26 of its allclose allowance). Relative L2 per step,
 * not a per-element relative error: a state element near zero (e.g. −0.00115 after 50 steps) keeps an
 * absolute rounding error of ~1e-7 that a per-element relative measure blows up.
 */
const SAMPLER_REL_L2 = 2e-6;
/** Per element: 16 ulps of 1.0 in float32 (16·2^-23 ≈ 1.9e-6) absolute, plus 1e-6 relative. */
const SAMPLER_ATOL = 16 * 2 ** -23;
const SAMPLER_RTOL = 1e-6;

const handlers: Record<AlgorithmKey, (c: Case) => Promise<void> | void> = {
  schedules(c) {
    const config = flowScheduleConfigFromDiffusers(c.scheduler_config);
    const schedule = flowMatchSchedule(config, { numSteps: c.num_steps, imageSeqLen: c.image_seq_len });
    expect(schedule.mu).toBeCloseTo(c.mu, 12);
    expect(schedule.sigmas.length).toBe(c.sigmas.length);
    schedule.sigmas.forEach((s, i) => {
      expect(Math.abs(s - c.sigmas[i])).toBeLessThan(1e-7);
    });
    schedule.timesteps.forEach((s, i) => {
      expect(Math.abs(s - c.timesteps[i])).toBeLessThan(6.2e-5);
    });
  },
  async samplers(c) {
    const sampler = samplerByName(c.solver);
    const result = await sampler.sample(Float32Array.from(c.z0), c.sigmas, toyVelocity, {
      keepTrajectory: true,
    });
    expect(result.trajectory!.length).toBe(c.latents.length);
    let worst = 0;
    result.trajectory!.forEach((x, i) => {
      const err = relativeL2(x, c.latents[i]);
      worst = Math.max(worst, err);
      expect(err, `step ${i} of ${c.solver}: relative L2`).toBeLessThan(SAMPLER_REL_L2);
      expectClose(`step ${i} of ${c.solver}`, x, c.latents[i], SAMPLER_ATOL, SAMPLER_RTOL);
    });
    console.log(
      `${c.solver}, ${c.sigmas.length - 1} steps: worst relative L2 per step ${worst.toExponential(2)}`,
    );
    expect(result.x0).toEqual(result.trajectory![result.trajectory!.length - 1]);
  },
  nft_loss(c) {
    const out = nftLoss(nftInput(c));
    // Float64 throughout (measured: r exact, loss within 1.4e-14, gradient within 6e-17).
    expectClose("r", out.r, c.r, 1e-12, 1e-12);
    expect(out.loss).toBeCloseTo(c.loss, 10);
    expect(out.policyLoss).toBeCloseTo(c.policy_loss, 10);
    expect(out.klLoss).toBeCloseTo(c.kl_loss, 10);
    // The fixture's gradient flows through the adaptive weights (see nftLoss's differentiateWeights).
    const through = nftLoss({ ...nftInput(c), differentiateWeights: true });
    expectClose("grad_v_theta", through.gradVTheta, c.grad_v_theta, 1e-12, 1e-9);
    expect(through.loss).toBe(out.loss);
  },
  group_stats(c) {
    const stats = groupStatistics(c.prompts, c.rewards, {
      stdThreshold: c.std_threshold,
      meanThreshold: c.mean_threshold,
    });
    // Float64 (measured within 2.2e-16); atol covers an advantage that is zero up to rounding.
    expectClose("advantages", stats.advantages, c.advantages, 1e-12, 1e-10);
    expectClose("group_std", stats.groupStd, c.group_std, 1e-12, 1e-10);
    expectClose("group_mean", stats.groupMean, c.group_mean, 1e-12, 1e-10);
    expect(Array.from(stats.validMask)).toEqual(c.valid_mask);
    expect(stats.banned).toEqual(c.banned);
  },
  old_policy_decay(c) {
    expect(oldPolicyDecay(c.step)).toBeCloseTo(c.eta, 12);
  },
};

const files = algorithmFixtureFiles();

describe(`algorithm fixtures under ${fixturesRoot()}`, () => {
  it("finds at least one algorithms.json", () => {
    expect(files.length).toBeGreaterThan(0);
  });
  it.each(Object.keys(ALGORITHM_KEYS))("has at least one %s case", (key) => {
    expect(algorithmCases(key as AlgorithmKey, files).length).toBeGreaterThan(0);
  });
  for (const file of files) {
    for (const [key, cases] of Object.entries(file.data)) {
      if (!isAlgorithmKey(key)) {
        // A key nobody checks fails rather than skips: a typo or a new key would otherwise pass unseen.
        it(`${file.name}: ${key} has a handler`, () => {
          expect.fail(
            `${file.name} has key "${key}", which no test checks: add a handler here and register the key ` +
              `in ALGORITHM_KEYS in ${REGISTRY_FILE} (registered: ${Object.keys(ALGORITHM_KEYS).join(", ")})`,
          );
        });
        continue;
      }
      it(`${file.name}: ${key} is a list of cases`, () => {
        expect(Array.isArray(cases)).toBe(true);
      });
      if (!Array.isArray(cases)) continue;
      cases.forEach((c, i) => {
        it(`${file.name}: ${key}[${i}]`, async () => {
          await handlers[key](c);
        });
      });
    }
  }
});
