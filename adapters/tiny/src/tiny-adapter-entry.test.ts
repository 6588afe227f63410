import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loraParameters, readLora } from "@edit-r1/adapter-kit";
import {
  checkAdapter,
  DpmSolverPlusPlus2MSampler,
  EditDataset,
  type EditRequest,
  promptSetFromRequests,
  type Reward,
  Rng,
  train,
} from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { generateEdits, parseRequirement, renderScene, verify } from "@edit-r1/shapes";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTinyPolicy, type TinyPolicy, tinyAdapter, writeTinyTrainData } from "./tiny-adapter.js";
import { TINY_IMAGE_SIZE } from "./tiny-config.js";

let dir: string;
let policy: TinyPolicy;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tiny-adapter-"));
  policy = await loadTinyPolicy({ lora: { rank: 2 } });
});
afterAll(async () => {
  await policy?.dispose();
  await rm(dir, { recursive: true, force: true });
  await closeDefaultRuntime();
});

const requests: EditRequest[] = generateEdits({
  seed: 4,
  count: 2,
  split: "heldout",
  size: TINY_IMAGE_SIZE,
}).map((e) => ({
  key: e.key,
  instruction: e.instruction,
  source: e.source,
}));

describe("tinyAdapter (core Adapter)", () => {
  it("passes core's capability check for training on cpu", () => {
    expect(() => checkAdapter(tinyAdapter, {}, "train")).not.toThrow();
  });

  it("exports θ as a PEFT LoRA folder that loadEditor applies, scaled by loraScale", async () => {
    const theta = policy.initialParameters();
    const rng = new Rng(1);
    for (const [k, v] of Object.entries(theta))
      if (k.endsWith("lora_B.weight")) v.set(rng.normals(v.length).map((x) => x * 0.05));
    const loraDir = join(dir, "lora");
    await policy.exportLora(theta, loraDir);
    const file = await readLora(loraDir);
    expect(file.rank).toBe(2);
    expect(file.alpha).toBe(policy.lora.alpha);
    expect(loraParameters(file, policy.parameterShapes, loraDir)).toEqual(theta);

    const protocol = { steps: 2, seed: 3 };
    const loadOptions = { steps: 2, noiseSeed: 3 };
    const direct = await policy.editor({ ...protocol, lora: theta }).edit(requests);
    const base = await policy.editor(protocol).edit(requests);
    const loaded = await tinyAdapter.loadEditor({ ...loadOptions, lora: loraDir });
    const zeroed = await tinyAdapter.loadEditor({ ...loadOptions, lora: loraDir, loraScale: 0 });
    try {
      expect(await loaded.edit(requests)).toEqual(direct);
      expect(await zeroed.edit(requests)).toEqual(base);
      expect(direct).not.toEqual(base);
      expect(loaded.protocol.lora).toBe(loraDir);
    } finally {
      await loaded.close?.();
      await zeroed.close?.();
    }
  });

  it("writes a default training set that core's EditDataset accepts", async () => {
    const path = await writeTinyTrainData(join(dir, "data"), 8);
    const data = await EditDataset.load(path);
    expect(data.size).toBe(8);
  });
});

// The exact verifier as the reward: the requirement tag carries the target.
const verifierReward: Reward = {
  name: "verifier",
  score: async (batch) =>
    batch.map((item) => {
      const { target } = parseRequirement(item.requirement!);
      const score = verify(item.edited, renderScene(target), item.source);
      return { score, components: { verifier: score } };
    }),
};

describe("core's train() on the tiny adapter", () => {
  it("runs an Edit-R1 step end to end and exports the EMA LoRA", async () => {
    const reward = verifierReward;
    const prompts = generateEdits({ seed: 8, count: 4, split: "train", size: TINY_IMAGE_SIZE }).map((e) => ({
      key: e.key,
      instruction: e.instruction,
      source: e.source,
      requirement: e.requirement,
    }));
    const result = await train({
      policy,
      sampler: new DpmSolverPlusPlus2MSampler(),
      reward,
      prompts: promptSetFromRequests(prompts),
      outDir: join(dir, "run"),
      config: {
        steps: 1,
        promptsPerBatch: 2,
        groupSize: 2,
        rolloutBatches: 1,
        trainBatchSize: 4,
        filter: { enabled: false },
        sampleGridEvery: 0,
      },
      progress: null,
    });
    expect(result.step).toBe(1);
    const m = result.metrics[0]!;
    expect(Number.isFinite(m.rewardMean)).toBe(true);
    expect(result.loraDir).toBeDefined();
    const file = await readLora(result.loraDir!);
    expect([...file.factors.keys()].sort()).toEqual(Object.keys(policy.parameterShapes).sort());
    // θ moved off B = 0: the step trained something.
    const movedB = Object.entries(result.params).some(
      ([k, v]) => k.endsWith("lora_B.weight") && v.some((x) => x !== 0),
    );
    expect(movedB).toBe(true);
  });
});

describe("a short seeded Edit-R1 run on the tiny adapter", () => {
  it("raises the verifier score of its prompts, measured on noise it never trained on", async () => {
    const edits = generateEdits({ seed: 0, count: 16, split: "train", size: TINY_IMAGE_SIZE });
    // Two prompts the base half-solves: a removal and a move (room to improve either way).
    const chosen = ["remove", "move"].map((c) => edits.find((e) => e.category === c)!);
    const prompts = chosen.map((e) => ({
      key: e.key,
      instruction: e.instruction,
      source: e.source,
      requirement: e.requirement,
    }));
    // 8 evaluation seeds per prompt, apart from the rollout noise (that comes from the train seed's stream).
    const score = async (lora?: Record<string, Float32Array>) => {
      let sum = 0;
      for (let seed = 100; seed < 108; seed++) {
        const images = await policy.editor({ seed, ...(lora ? { lora } : {}) }).edit(prompts);
        images.forEach((img, i) => {
          sum += verify(img, chosen[i]!.target, chosen[i]!.source);
        });
      }
      return sum / (8 * prompts.length);
    };
    const before = await score();
    const result = await train({
      policy,
      sampler: new DpmSolverPlusPlus2MSampler(),
      reward: verifierReward,
      prompts: promptSetFromRequests(prompts),
      outDir: join(dir, "short-run"),
      config: {
        seed: 3,
        steps: 10,
        promptsPerBatch: 2,
        groupSize: 8,
        rolloutBatches: 1,
        trainBatchSize: 16,
        timestepFraction: 0.34,
        optimizer: { lr: 2e-3 },
        filter: { enabled: false },
        checkpointEvery: 10,
        sampleGridEvery: 0,
      },
      progress: null,
    });
    const after = await score(result.params);
    console.log(`short run: verifier ${before.toFixed(3)} → ${after.toFixed(3)}`);
    expect(after).toBeGreaterThan(before + 0.05);
  }, 120_000);
});
