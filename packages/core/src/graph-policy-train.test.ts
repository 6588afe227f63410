import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Runtime } from "@edit-r1/engine";
import { afterAll, describe, expect, it } from "vitest";
import { promptSetFromRequests } from "./edit-dataset.js";
import { editR1BaseSigmas } from "./flow-schedule.js";
import { GraphNftPolicyCore } from "./graph-policy.js";
import type { ParamSet } from "./params.js";
import { Rng } from "./rng.js";
import { DpmSolverPlusPlus2MSampler, EulerSampler } from "./samplers.js";
import { type VelocityMlp, velocityMlp } from "./test-velocity-mlp.js";
import { ToyFlowPolicy, ToyRegionReward, toyPointOf } from "./toy-policy.js";
import type { NftBatch, NftStepResult, TrainablePolicy } from "./trainable-policy.js";
import { train } from "./trainer.js";
import type { EditRequest, RgbImage, VelocityFn } from "./types.js";

const runtime = new Runtime();
const dirs: string[] = [];
afterAll(async () => {
  await runtime.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * A TrainablePolicy as an adapter would write it on GraphNftPolicyCore: 2-D points (one token of two
 * channels), a per-instruction condition vector, a frozen base MLP with LoRA factors as θ. Decoding
 * reuses the toy policy's point-to-image mapping, so ToyRegionReward scores it.
 */
class GraphToyPolicy implements TrainablePolicy {
  readonly name = "graph-toy";
  readonly core: GraphNftPolicyCore;
  private readonly mlp: VelocityMlp;
  private readonly schedule = [...editR1BaseSigmas(6), 0];
  private readonly decoder = new ToyFlowPolicy();

  constructor() {
    this.mlp = velocityMlp({
      tokens: 1,
      channels: 2,
      condDim: 2,
      hidden: 16,
      rank: 4,
      seed: 3,
      outScale: 0.1,
    });
    this.core = new GraphNftPolicyCore(this.mlp.spec, { runtime, threads: 1 });
  }

  initialParameters(): ParamSet {
    return this.mlp.initialParameters(1);
  }

  latentSize(): number {
    return 2;
  }

  sigmas(): number[] {
    return [...this.schedule];
  }

  conditions(requests: readonly EditRequest[]) {
    const cond = new Float32Array(requests.length * 2);
    requests.forEach((r, i) => {
      const rng = Rng.derive(0, r.instruction);
      cond.set([rng.next() * 2 - 1, rng.next() * 2 - 1], i * 2);
    });
    return { cond };
  }

  velocity(requests: readonly EditRequest[], params: ParamSet): VelocityFn {
    return this.core.velocity(this.conditions(requests), params, requests.length);
  }

  decode(x0: Float32Array, requests: readonly EditRequest[]): Promise<RgbImage[]> {
    return this.decoder.decode(x0, requests);
  }

  lossAndGradients(batch: NftBatch, params: ParamSet, oldParams: ParamSet): Promise<NftStepResult> {
    return this.core.lossAndGradients(this.conditions(batch.requests), batch, params, oldParams);
  }
}

const blank = { width: 1, height: 1, data: new Uint8Array(3) };
const requests: EditRequest[] = ["move it right", "push right", "go east", "shift the dot"].map(
  (instruction, i) => ({ key: `p${i}`, instruction, source: blank }),
);

/** Mean reward of rollouts from fixed noise: an evaluation independent of the training draws. */
async function evalReward(policy: GraphToyPolicy, params: ParamSet, reward: ToyRegionReward) {
  const reqs = Array.from({ length: 256 }, (_, i) => requests[i % requests.length]!);
  const noise = new Rng(999).normals(reqs.length * 2);
  const { x0 } = await new EulerSampler().sample(noise, policy.sigmas(), policy.velocity(reqs, params));
  const images = await policy.decode(x0, reqs);
  return images.reduce((a, img) => a + reward.scorePoint(toyPointOf(img)[0]), 0) / images.length;
}

describe("train() with a GraphNftPolicyCore policy (onnxruntime, CPU)", () => {
  it("raises the mean reward of a reward preferring x > 0.5, training only LoRA factors", async () => {
    const policy = new GraphToyPolicy();
    const reward = new ToyRegionReward(0.5, 2);
    const before = await evalReward(policy, policy.initialParameters(), reward);
    const outDir = mkdtempSync(join(tmpdir(), "edit-r1-graph-policy-"));
    dirs.push(outDir);
    const result = await train({
      policy,
      sampler: new DpmSolverPlusPlus2MSampler(),
      reward,
      prompts: promptSetFromRequests(requests),
      outDir,
      config: {
        seed: 7,
        steps: 25,
        promptsPerBatch: 2,
        groupSize: 8,
        rolloutBatches: 2,
        trainBatchSize: 8,
        optimizer: { lr: 5e-3 },
        checkpointEvery: 25,
        sampleGridEvery: 0,
      },
      progress: null,
    });
    const after = await evalReward(policy, result.params, reward);
    console.log(`graph toy reward: before ${before.toFixed(3)}, after ${after.toFixed(3)}`);
    expect(after).toBeGreaterThan(before + 0.25);
    const mean = (ms: typeof result.metrics) => ms.reduce((a, m) => a + m.rewardMean, 0) / ms.length;
    expect(mean(result.metrics.slice(-5))).toBeGreaterThan(mean(result.metrics.slice(0, 5)));
    await policy.core.dispose();
  });
});
