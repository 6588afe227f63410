import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeDefaultRuntime, openSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PRETRAIN_STATE_FILE, pretrainBatch, pretrainTiny } from "./pretrain.js";
import { MICRO_TRANSFORMER_CONFIG_JSON } from "./test-micro-config.js";
import { readTinyWeights } from "./tiny-weights.js";

// A micro transformer: the point is the training loop, not the model.
const transformer = MICRO_TRANSFORMER_CONFIG_JSON;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tiny-pretrain-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await closeDefaultRuntime();
});

const maxDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe("pretrainTiny", () => {
  it("draws each step's pairs from (seed, step) alone", () => {
    const a = pretrainBatch(5, 3, 4);
    expect(a.map((e) => e.key)).toEqual(pretrainBatch(5, 3, 4).map((e) => e.key));
    expect(a.map((e) => e.key)).not.toEqual(pretrainBatch(5, 4, 4).map((e) => e.key));
    expect(a.every((e) => e.split === "train")).toBe(true);
  });

  it("trains every weight, writes loadable weights, and resumes where it stopped", async () => {
    const common = { seed: 3, batchSize: 2, lr: 1e-3, transformer, checkpointEvery: 1 };
    const straight = await pretrainTiny({ ...common, steps: 3, out: join(dir, "straight") });
    expect(Number.isFinite(straight.finalLoss)).toBe(true);
    const losses: number[] = [];
    await pretrainTiny({
      ...common,
      steps: 2,
      out: join(dir, "resumed"),
      onProgress: (p) => void losses.push(p.loss),
    });
    const resumed = await pretrainTiny({
      ...common,
      steps: 3,
      out: join(dir, "resumed"),
      onProgress: (p) => void losses.push(p.loss),
    });
    // The resumed run did only step 3, and ended where the uninterrupted run did.
    expect(losses.length).toBe(3);
    expect(losses[2]).toBeCloseTo(straight.finalLoss, 5);
    expect(resumed.finalLoss).toBe(losses[2]);
    const loaded = await readTinyWeights(join(dir, "resumed"));
    expect(loaded.config.transformer).toEqual(transformer);
    expect(loaded.config.training?.steps).toBe(3);
    for (const [k, t] of straight.weights.tensors) {
      const other = loaded.tensors.get(k);
      expect(other?.shape, k).toEqual(t.shape);
      expect(maxDiff(other!.data, t.data), k).toBeLessThan(1e-6);
    }
    // Every weight is in the optimizer (state holds w/m/v for each), and the zero-initialised output layer
    // and block gates learned, so gradients reach the weights.
    const state = await openSafetensors(join(dir, "resumed", PRETRAIN_STATE_FILE));
    for (const k of straight.weights.tensors.keys()) {
      for (const part of ["w", "m", "v"]) expect(state.has(`${part}/${k}`), `${part}/${k}`).toBe(true);
    }
    const initial = await pretrainTiny({ ...common, steps: 0, out: join(dir, "initial") });
    for (const k of [
      "proj_out.weight",
      "transformer_blocks.0.norm1.linear.weight",
      "single_transformer_blocks.0.norm.linear.bias",
    ]) {
      expect(
        maxDiff(initial.weights.tensors.get(k)!.data, straight.weights.tensors.get(k)!.data),
        k,
      ).toBeGreaterThan(1e-4);
    }
  }, 120_000);
});
