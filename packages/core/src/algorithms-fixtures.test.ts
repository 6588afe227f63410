import { relative } from "node:path";
import { describe, expect, it } from "vitest";
import { oldPolicyDecay } from "./decay.js";
import { flowMatchSchedule, flowScheduleConfigFromDiffusers } from "./flow-schedule.js";
import { groupStatistics } from "./group-stats.js";
import { nftLoss } from "./nft-loss.js";
import { samplerByName } from "./samplers.js";
import { algorithmFixtureFiles, fixturesRoot, maxRelativeError } from "./test-fixtures.js";

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

const handlers: Record<string, (c: Case) => Promise<void> | void> = {
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
    result.trajectory!.forEach((x, i) => {
      expect(maxRelativeError(x, c.latents[i])).toBeLessThan(2e-5);
    });
    expect(maxRelativeError(result.x0, c.latents[c.latents.length - 1])).toBeLessThan(2e-5);
  },
  nft_loss(c) {
    const out = nftLoss(nftInput(c));
    expect(maxRelativeError(out.r, c.r, 1e-12)).toBeLessThan(1e-12);
    expect(out.loss).toBeCloseTo(c.loss, 10);
    expect(out.policyLoss).toBeCloseTo(c.policy_loss, 10);
    expect(out.klLoss).toBeCloseTo(c.kl_loss, 10);
    // The fixture's gradient flows through the adaptive weights (see nftLoss's differentiateWeights).
    const through = nftLoss({ ...nftInput(c), differentiateWeights: true });
    expect(maxRelativeError(through.gradVTheta, c.grad_v_theta, 1e-9)).toBeLessThan(1e-9);
    expect(through.loss).toBe(out.loss);
  },
  group_stats(c) {
    const stats = groupStatistics(c.prompts, c.rewards, {
      stdThreshold: c.std_threshold,
      meanThreshold: c.mean_threshold,
    });
    expect(maxRelativeError(stats.advantages, c.advantages, 1e-9)).toBeLessThan(1e-10);
    expect(maxRelativeError(stats.groupStd, c.group_std, 1e-9)).toBeLessThan(1e-10);
    expect(maxRelativeError(stats.groupMean, c.group_mean, 1e-9)).toBeLessThan(1e-10);
    expect(Array.from(stats.validMask)).toEqual(c.valid_mask);
    expect(stats.banned).toEqual(c.banned);
  },
  old_policy_decay(c) {
    expect(oldPolicyDecay(c.step)).toBeCloseTo(c.eta, 12);
  },
};

const files = algorithmFixtureFiles();

describe("algorithm fixtures", () => {
  it(`finds at least one algorithms.json under ${fixturesRoot()}`, () => {
    expect(files.length).toBeGreaterThan(0);
  });
  for (const file of files) {
    const name = relative(fixturesRoot(), file.path);
    for (const [key, cases] of Object.entries(file.data)) {
      const handler = handlers[key];
      if (!handler) {
        it.skip(`${name}: ${key} (no handler in core)`, () => {});
        continue;
      }
      cases.forEach((c, i) => {
        it(`${name}: ${key}[${i}]`, async () => {
          await handler(c);
        });
      });
    }
  }
});
