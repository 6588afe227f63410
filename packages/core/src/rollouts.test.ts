import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { promptSetFromRequests } from "./edit-dataset.js";
import { cloneParams, type ParamSet } from "./params.js";
import {
  InProcessRollouts,
  jobRequests,
  type RolloutBatch,
  type RolloutExecutor,
  type RolloutJob,
  runRollout,
} from "./rollouts.js";
import { EulerSampler } from "./samplers.js";
import { ToyFlowPolicy, ToyRegionReward } from "./toy-policy.js";
import { resolveTrainConfig, type StepMetrics, type TrainConfigInput, train } from "./trainer.js";
import type { EditRequest } from "./types.js";

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "edit-r1-rollouts-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const blank = { width: 1, height: 1, data: new Uint8Array(3) };
const requests: EditRequest[] = ["move it right", "push right", "go east", "shift the dot"].map(
  (instruction, i) => ({ key: `p${i}`, instruction, source: blank }),
);
const prompts = promptSetFromRequests(requests);
const config: TrainConfigInput = {
  seed: 11,
  promptsPerBatch: 2,
  groupSize: 4,
  rolloutBatches: 2,
  trainBatchSize: 4,
  optimizer: { lr: 3e-3 },
  checkpointEvery: 1,
  keepCheckpoints: 10,
  sampleGridEvery: 0,
};

/**
 * Rollouts as a remote worker does them: its own policy object, the job's requests rebuilt from the prompt
 * set by index (not the trainer's), each version copied on publish, results in any order after a delay.
 */
class ElsewhereRollouts implements RolloutExecutor {
  readonly name = "elsewhere";
  readonly versions = new Map<number, ParamSet>();
  readonly jobs: RolloutJob[] = [];
  released = -1;
  private readonly policy = new ToyFlowPolicy();

  async publishVersion(version: number, params: ParamSet): Promise<void> {
    this.versions.set(version, cloneParams(params));
  }
  async releaseVersionsBefore(version: number): Promise<void> {
    this.released = Math.max(this.released, version);
  }
  async run(job: RolloutJob): Promise<RolloutBatch> {
    this.jobs.push(structuredClone(job));
    const own = jobRequests(job, (i) => requests[i]!);
    // Later batches finish first.
    await new Promise((r) => setTimeout(r, 5 * (3 - job.batch)));
    return runRollout(this.policy, new EulerSampler(), own, job.noise, this.versions.get(job.version)!);
  }
  stats(): Record<string, number> {
    return { jobs: this.jobs.length };
  }
}

/** The numbers of a run, without its timings and executor counters. */
function numbers(metrics: StepMetrics[]): unknown[] {
  return metrics.map(({ time: _t, rollouts: _r, ...rest }) => rest);
}

async function run(
  steps: number,
  lag: number,
  options: { rollouts?: RolloutExecutor; outDir?: string; resume?: boolean } = {},
) {
  return train({
    policy: new ToyFlowPolicy(),
    sampler: new EulerSampler(),
    reward: new ToyRegionReward(),
    prompts,
    outDir: options.outDir ?? tempDir(),
    config: { ...config, steps, rolloutLag: lag },
    progress: null,
    ...(options.rollouts ? { rollouts: options.rollouts } : {}),
    ...(options.resume ? { resume: true } : {}),
  });
}

describe("rollout executors", () => {
  it("a job gives the same batch wherever it runs: elsewhere equals in-process at lag 0 and at lag 2", async () => {
    for (const lag of [0, 2]) {
      const here = await run(5, lag);
      const elsewhere = new ElsewhereRollouts();
      const there = await run(5, lag, { rollouts: elsewhere });
      expect(numbers(there.metrics)).toEqual(numbers(here.metrics));
      expect(Array.from(there.params["mlp.0.weight"]!)).toEqual(Array.from(here.params["mlp.0.weight"]!));
      // Jobs handed out by each step's metrics line: two per step, the first L steps ahead.
      expect(there.metrics.map((m) => m.rollouts?.jobs)).toEqual(
        [1, 2, 3, 4, 5].map((s) => 2 * Math.min(5, s + lag)),
      );
    }
  });

  it("at lag L each step's rollouts use the old policy of L steps before; the metrics say so", async () => {
    const elsewhere = new ElsewhereRollouts();
    const lagged = await run(5, 2, { rollouts: elsewhere });
    expect(lagged.metrics.map((m) => m.rolloutLag)).toEqual([0, 1, 2, 2, 2]);
    expect(elsewhere.jobs.map((j) => [j.step, j.version])).toEqual([
      [0, 0],
      [0, 0],
      [1, 0],
      [1, 0],
      [2, 0],
      [2, 0],
      [3, 1],
      [3, 1],
      [4, 2],
      [4, 2],
    ]);
    // A lag changes the run: rollouts of later steps come from an older policy.
    const synchronous = await run(5, 0);
    expect(synchronous.metrics.map((m) => m.rolloutLag)).toEqual([0, 0, 0, 0, 0]);
    expect(numbers(lagged.metrics).slice(0, 1)).toEqual(numbers(synchronous.metrics).slice(0, 1));
    expect(lagged.metrics[4]!.rewardMean).not.toEqual(synchronous.metrics[4]!.rewardMean);
    // Every version is released once no job handed out names it.
    expect(elsewhere.released).toBe(5);
  });

  it("resumes exactly at lag 2: jobs handed out ahead are in the checkpoint and go out again", async () => {
    const straight = await run(5, 2);
    const outDir = tempDir();
    await run(2, 2, { outDir });
    const state = JSON.parse(
      readFileSync(join(outDir, "checkpoints", "step-00000002", "trainer-state.json"), "utf8"),
    ) as { pendingRollouts?: RolloutJob[] };
    // steps: 2 hands out nothing past the run's end, so the checkpoint has nothing pending.
    expect(state.pendingRollouts).toBeUndefined();

    // Stopped mid-run (signal) after step 2 of 5: steps 3 and 4 are out, with versions 1 and 2.
    const outDir2 = tempDir();
    const controller = new AbortController();
    await expect(
      train({
        policy: new ToyFlowPolicy(),
        sampler: new EulerSampler(),
        reward: new ToyRegionReward(),
        prompts,
        outDir: outDir2,
        config: { ...config, steps: 5, rolloutLag: 2 },
        progress: {
          write: (line: string) => {
            if (line.startsWith("step 2/")) controller.abort();
            return true;
          },
        } as unknown as NodeJS.WritableStream,
        signal: controller.signal,
      }),
    ).rejects.toThrow();
    const mid = JSON.parse(
      readFileSync(join(outDir2, "checkpoints", "step-00000002", "trainer-state.json"), "utf8"),
    ) as { pendingRollouts?: RolloutJob[] };
    expect(mid.pendingRollouts?.map((j) => [j.step, j.version])).toEqual([
      [2, 0],
      [2, 0],
      [3, 1],
      [3, 1],
    ]);
    const resumed = await run(5, 2, { outDir: outDir2, resume: true });
    expect(resumed.metrics.map((m) => m.step)).toEqual([3, 4, 5]);
    expect(numbers(resumed.metrics)).toEqual(numbers(straight.metrics.slice(2)));
    expect(Array.from(resumed.params["mlp.0.weight"]!)).toEqual(Array.from(straight.params["mlp.0.weight"]!));
  });

  it("rejects a negative or fractional rolloutLag", () => {
    expect(() => resolveTrainConfig({ rolloutLag: -1 })).toThrow(/rolloutLag must be a non-negative integer/);
    expect(() => resolveTrainConfig({ rolloutLag: 0.5 })).toThrow(/rolloutLag/);
  });

  it("in-process rollouts refuse a version that was never published", async () => {
    const rollouts = new InProcessRollouts(new ToyFlowPolicy(), new EulerSampler());
    const job: RolloutJob = {
      step: 0,
      batch: 0,
      promptIndices: [0],
      groupSize: 2,
      noise: { seed: 1, spare: null },
      version: 3,
    };
    await expect(
      rollouts.run(
        job,
        jobRequests(job, (i) => requests[i]!),
      ),
    ).rejects.toThrow(/version 3 was never published/);
  });
});
