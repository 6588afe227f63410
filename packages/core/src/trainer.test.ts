import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { promptSetFromRequests } from "./edit-dataset.js";
import type { ParamSet } from "./params.js";
import { Rng } from "./rng.js";
import { OutputFolderError } from "./run-directory.js";
import { DpmSolverPlusPlus2MSampler, EulerSampler } from "./samplers.js";
import { ToyFlowPolicy, ToyRegionReward, toyPointOf } from "./toy-policy.js";
import { type StepMetrics, type TrainConfigInput, TrainingDivergedError, train } from "./trainer.js";
import type { EditRequest, Reward, RewardInput } from "./types.js";

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "edit-r1-core-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const blank = { width: 1, height: 1, data: new Uint8Array(3) };
const requests: EditRequest[] = ["move it right", "push right", "go east", "shift the dot"].map(
  (instruction, i) => ({
    key: `p${i}`,
    instruction,
    source: blank,
  }),
);
const prompts = promptSetFromRequests(requests);

const toyConfig: TrainConfigInput = {
  seed: 7,
  promptsPerBatch: 2,
  groupSize: 8,
  rolloutBatches: 2,
  trainBatchSize: 8,
  optimizer: { lr: 3e-3 },
  checkpointEvery: 1,
  keepCheckpoints: 10,
  sampleGridEvery: 2,
};

/** Mean reward of the toy policy's rollouts from fixed noise: an evaluation independent of training draws. */
async function evalReward(policy: ToyFlowPolicy, params: ParamSet, reward: ToyRegionReward): Promise<number> {
  const reqs = Array.from({ length: 256 }, (_, i) => requests[i % requests.length]!);
  const noise = new Rng(999).normals(reqs.length * 2);
  const { x0 } = await new EulerSampler().sample(noise, policy.sigmas(reqs), policy.velocity(reqs, params));
  const images = await policy.decode(x0, reqs);
  return images.reduce((a, img) => a + reward.scorePoint(toyPointOf(img)[0]), 0) / images.length;
}

const withoutTimes = (m: StepMetrics[]) => m.map(({ time: _t, ...rest }) => rest);

describe("train (toy policy)", () => {
  it("raises the mean reward of a reward preferring x > 0.5", async () => {
    const policy = new ToyFlowPolicy({ seed: 1 });
    const reward = new ToyRegionReward(0.5, 2);
    const before = await evalReward(policy, policy.initialParameters(), reward);
    const result = await train({
      policy,
      sampler: new DpmSolverPlusPlus2MSampler(),
      reward,
      prompts,
      outDir: tempDir(),
      config: { ...toyConfig, steps: 25, checkpointEvery: 25 },
      progress: null,
    });
    const after = await evalReward(policy, result.params, reward);
    const afterEma = await evalReward(policy, result.emaParams, reward);
    console.log(
      `toy reward: before ${before.toFixed(3)}, after ${after.toFixed(3)} (EMA ${afterEma.toFixed(3)})`,
    );
    expect(after).toBeGreaterThan(before + 0.25);
    expect(afterEma).toBeGreaterThan(before + 0.2);
    const firstSteps = result.metrics.slice(0, 5).reduce((a, m) => a + m.rewardMean, 0) / 5;
    const lastSteps = result.metrics.slice(-5).reduce((a, m) => a + m.rewardMean, 0) / 5;
    expect(lastSteps).toBeGreaterThan(firstSteps);
  });

  it("resumes exactly: 4 steps in one go equal 2 + resume + 2", async () => {
    const run = async (outDir: string, steps: number, resume: boolean) =>
      train({
        policy: new ToyFlowPolicy({ seed: 3 }),
        sampler: new EulerSampler(),
        reward: new ToyRegionReward(),
        prompts,
        outDir,
        config: { ...toyConfig, steps },
        resume,
        progress: null,
      });
    const straight = await run(tempDir(), 4, false);
    const split = tempDir();
    await run(split, 2, false);
    const resumed = await run(split, 4, true);
    expect(resumed.metrics.map((m) => m.step)).toEqual([3, 4]);
    const lines = readFileSync(join(split, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(withoutTimes(lines)).toEqual(withoutTimes(straight.metrics));
    expect(Array.from(resumed.params["mlp.0.weight"]!)).toEqual(Array.from(straight.params["mlp.0.weight"]!));
    expect(Array.from(resumed.emaParams["mlp.4.weight"]!)).toEqual(
      Array.from(straight.emaParams["mlp.4.weight"]!),
    );
    const report = readFileSync(join(split, "report.html"), "utf8");
    expect(report).toContain("<svg");
    expect(report).toContain("data:image/png;base64,");
  });

  it("stops on a non-finite reward and leaves the last good checkpoint intact", async () => {
    const inner = new ToyRegionReward();
    let calls = 0;
    const flaky: Reward = {
      name: "flaky",
      async score(batch: readonly RewardInput[]) {
        calls++;
        const out = await inner.score(batch);
        // Two scoring calls per step: the fifth is step 3's first batch.
        if (calls === 5) out[1]!.score = Number.NaN;
        return out;
      },
    };
    const outDir = tempDir();
    const attempt = train({
      policy: new ToyFlowPolicy({ seed: 3 }),
      sampler: new EulerSampler(),
      reward: flaky,
      prompts,
      outDir,
      config: { ...toyConfig, steps: 5 },
      progress: null,
    });
    await expect(attempt).rejects.toThrow(TrainingDivergedError);
    await expect(attempt).rejects.toThrow(/step 3.*NaN.*step-00000002/s);
    // The good checkpoint resumes; with a sane reward the run then finishes.
    const resumed = await train({
      policy: new ToyFlowPolicy({ seed: 3 }),
      sampler: new EulerSampler(),
      reward: inner,
      prompts,
      outDir,
      config: { ...toyConfig, steps: 3 },
      resume: true,
      progress: null,
    });
    expect(resumed.metrics.map((m) => m.step)).toEqual([3]);
  });

  it("scores one rollout batch while the next one rolls out", async () => {
    const events: string[] = [];
    const inner = new ToyRegionReward();
    let scored = 0;
    const slow: Reward = {
      name: "slow",
      score(batch) {
        const id = scored++;
        events.push(`score ${id} start`);
        return new Promise((resolve) =>
          setTimeout(() => {
            events.push(`score ${id} end`);
            resolve(inner.score(batch));
          }, 20),
        );
      },
    };
    const policy = new ToyFlowPolicy();
    let rollouts = 0;
    const sigmas = policy.sigmas.bind(policy);
    policy.sigmas = (reqs) => {
      events.push(`rollout ${rollouts++}`);
      return sigmas(reqs);
    };
    await train({
      policy,
      sampler: new EulerSampler(),
      reward: slow,
      prompts,
      outDir: tempDir(),
      config: { ...toyConfig, steps: 1 },
      progress: null,
    });
    expect(events.slice(0, 5)).toEqual([
      "rollout 0",
      "score 0 start",
      "rollout 1",
      "score 1 start",
      "score 0 end",
    ]);
  });

  it("gives the members of a group the same training noise and timesteps, unless trainNoise is sample", async () => {
    const seen = async (trainNoise: "group" | "sample") => {
      const policy = new ToyFlowPolicy();
      const draws: { key: string; t: number; noise: string }[] = [];
      const inner = policy.lossAndGradients.bind(policy);
      policy.lossAndGradients = (batch, params, old) => {
        const dim = batch.noise.length / batch.requests.length;
        batch.requests.forEach((r, i) => {
          const noise = Array.from(batch.noise.subarray(i * dim, (i + 1) * dim)).join(",");
          draws.push({ key: r.key, t: batch.t[i]!, noise });
        });
        return inner(batch, params, old);
      };
      await train({
        policy,
        sampler: new EulerSampler(),
        reward: new ToyRegionReward(),
        prompts,
        outDir: tempDir(),
        config: { ...toyConfig, steps: 1, timestepFraction: 0.5, trainNoise },
        progress: null,
      });
      return draws;
    };
    // Per trained timestep j, every member of a group sees one (t, noise); the pairs differ between groups.
    const distinctPerGroup = (draws: { key: string; t: number; noise: string }[]) => {
      const byKey = new Map<string, Set<string>>();
      for (const d of draws) {
        const set = byKey.get(d.key) ?? new Set<string>();
        set.add(`${d.t}|${d.noise}`);
        byKey.set(d.key, set);
      }
      return byKey;
    };
    const group = distinctPerGroup(await seen("group"));
    const sample = distinctPerGroup(await seen("sample"));
    const timesteps = Math.floor((new ToyFlowPolicy().sigmas(requests).length - 1) * 0.5);
    for (const set of group.values()) expect(set.size).toBe(timesteps);
    expect(new Set([...group.values()].flatMap((s) => [...s])).size).toBe(group.size * timesteps);
    // Per sample: each of the 2 × 8 rollouts of a prompt (two rollout batches) brings its own draws.
    for (const set of sample.values()) expect(set.size).toBeGreaterThan(timesteps);
  });

  it("runs no training pass on the samples the group filter masks", async () => {
    const policy = new ToyFlowPolicy();
    const trained: string[] = [];
    const inner = policy.lossAndGradients.bind(policy);
    policy.lossAndGradients = (batch, params, old) => {
      trained.push(...batch.requests.map((r) => r.key));
      return inner(batch, params, old);
    };
    const toy = new ToyRegionReward();
    // Prompt p0 always scores 0.5: a zero-spread group, which the filter masks.
    const reward: Reward = {
      name: "half-constant",
      async score(batch: RewardInput[]) {
        const scored = await toy.score(batch);
        return scored.map((o, i) => (batch[i]!.key === "p0" ? { ...o, score: 0.5 } : o));
      },
    };
    const result = await train({
      policy,
      sampler: new EulerSampler(),
      reward,
      prompts,
      outDir: tempDir(),
      config: { ...toyConfig, steps: 3, promptsPerBatch: 4, rolloutBatches: 1, filter: { enabled: true } },
      progress: null,
    });
    expect(trained.length).toBeGreaterThan(0);
    expect(trained).not.toContain("p0");
    for (const m of result.metrics) {
      expect(m.trainedSamples).toBe(Math.round(m.samples * (1 - m.filteredFraction)));
      expect(m.filteredFraction).toBeGreaterThanOrEqual(0.25);
    }
  });

  it("refuses to overwrite a run folder without resume", async () => {
    const outDir = tempDir();
    const cfg = { ...toyConfig, steps: 1 };
    const opts = {
      policy: new ToyFlowPolicy(),
      sampler: new EulerSampler(),
      reward: new ToyRegionReward(),
      prompts,
    };
    await train({ ...opts, outDir, config: cfg, progress: null });
    await expect(train({ ...opts, outDir, config: cfg, progress: null })).rejects.toThrow(
      /already holds checkpoints/,
    );
  });
});

describe("train (resolution buckets and prepare)", () => {
  it("draws every rollout batch and micro-batch from one bucket, and prepares conditions before rolling out", async () => {
    // Two buckets of prompts, told apart by the source width; the toy model ignores the image.
    const wide = { width: 2, height: 1, data: new Uint8Array(6) };
    const mixed: EditRequest[] = Array.from({ length: 8 }, (_, i) => ({
      key: `b${i}`,
      instruction: `prompt ${i}`,
      source: i % 2 ? wide : blank,
    }));
    const log: string[] = [];
    class BucketedToy extends ToyFlowPolicy {
      bucketKey(r: EditRequest): string {
        return `${r.source.width}x${r.source.height}`;
      }
      async prepare(reqs: readonly EditRequest[]): Promise<void> {
        log.push(`prepare ${[...new Set(reqs.map((r) => this.bucketKey(r)))].join(",")}`);
      }
      override velocity(reqs: readonly EditRequest[], params: ParamSet) {
        log.push(`velocity ${[...new Set(reqs.map((r) => this.bucketKey(r)))].join(",")}`);
        return super.velocity(reqs, params);
      }
      override lossAndGradients(...args: Parameters<ToyFlowPolicy["lossAndGradients"]>) {
        log.push(`train ${[...new Set(args[0].requests.map((r) => this.bucketKey(r)))].join(",")}`);
        return super.lossAndGradients(...args);
      }
    }
    await train({
      policy: new BucketedToy({ seed: 3 }),
      sampler: new EulerSampler(),
      reward: new ToyRegionReward(0.5, 2),
      prompts: promptSetFromRequests(mixed),
      outDir: join(tempDir(), "run"),
      config: { ...toyConfig, steps: 3, promptsPerBatch: 2, groupSize: 4, trainBatchSize: 3 },
      progress: null,
    });
    expect(log.length).toBeGreaterThan(6);
    // One bucket per call, and every velocity call follows a prepare of the same bucket.
    for (const line of log) expect(line).toMatch(/^(prepare|velocity|train) \dx1$/);
    log.forEach((line, i) => {
      if (line.startsWith("velocity")) expect(log[i - 1]).toBe(line.replace("velocity", "prepare"));
    });
    // Both buckets were drawn over the run.
    expect(new Set(log.map((l) => l.split(" ")[1])).size).toBe(2);
  });
});

describe("train (output folder faults, checkpoint before metrics)", () => {
  const opts = () => ({
    policy: new ToyFlowPolicy({ seed: 3 }),
    sampler: new EulerSampler(),
    reward: new ToyRegionReward(),
    prompts,
    config: { ...toyConfig, steps: 2 },
    progress: null,
  });
  const steps = (outDir: string) =>
    readFileSync(join(outDir, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).step as number);

  it("says in words that the folder is a file, or that metrics.jsonl is a folder, before writing anything", async () => {
    const file = join(tempDir(), "a-file");
    writeFileSync(file, "x");
    await expect(train({ ...opts(), outDir: file })).rejects.toThrow(/a-file is a file; choose a folder/);
    await expect(train({ ...opts(), outDir: join(file, "run") })).rejects.toThrow(
      /run cannot be created: .*a-file is a file, not a folder/,
    );
    const outDir = tempDir();
    mkdirSync(join(outDir, "metrics.jsonl"));
    const err = await train({ ...opts(), outDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputFolderError);
    expect((err as Error).message).toMatch(/metrics\.jsonl is a folder, but the run writes a file there/);
    expect((err as Error).message).not.toMatch(/EISDIR/);
    expect(readdirSync(outDir)).toEqual(["metrics.jsonl"]);
  });

  it("writes no metrics line for a step whose checkpoint failed, and resumes from the last good one", async () => {
    const outDir = tempDir();
    const inner = new ToyRegionReward();
    let calls = 0;
    // Step 2's first scoring call puts a file where the checkpoints folder was.
    const sabotage: Reward = {
      name: "toy",
      async score(batch: readonly RewardInput[]) {
        if (++calls === 3) {
          renameSync(join(outDir, "checkpoints"), join(outDir, "moved"));
          writeFileSync(join(outDir, "checkpoints"), "");
        }
        return inner.score(batch);
      },
    };
    const err = await train({ ...opts(), reward: sabotage, outDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutputFolderError);
    expect((err as Error).message).toMatch(
      /cannot write the checkpoint of step 2 .*checkpoints is a file, but the run keeps a folder there/,
    );
    expect(steps(outDir)).toEqual([1]);
    rmSync(join(outDir, "checkpoints"));
    renameSync(join(outDir, "moved"), join(outDir, "checkpoints"));
    const resumed = await train({ ...opts(), outDir, resume: true });
    expect(resumed.metrics.map((m) => m.step)).toEqual([2]);
    expect(steps(outDir)).toEqual([1, 2]);
  });

  it("restores a checkpoint's metrics line on resume when the run stopped before appending it", async () => {
    const outDir = tempDir();
    const first = await train({ ...opts(), outDir });
    const path = join(outDir, "metrics.jsonl");
    // As if the process died between writing checkpoint 2 and appending its line.
    writeFileSync(path, `${readFileSync(path, "utf8").trim().split("\n")[0]}\n`);
    await train({ ...opts(), config: { ...toyConfig, steps: 3 }, outDir, resume: true });
    expect(steps(outDir)).toEqual([1, 2, 3]);
    const line2 = JSON.parse(readFileSync(path, "utf8").split("\n")[1]!);
    expect(line2).toEqual(JSON.parse(JSON.stringify(first.metrics[1])));
  });
});
