import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readLora } from "@edit-r1/adapter-kit";
import {
  checkAdapter,
  DEFAULT_NFT_SETTINGS,
  DpmSolverPlusPlus2MSampler,
  type EditRequest,
  type NftBatch,
  type ParamSet,
  promptSetFromRequests,
  type Reward,
  type RgbImage,
  Rng,
  train,
} from "@edit-r1/core";
import { closeDefaultRuntime, planMemory, RECOMPUTE_OF_ATTR } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adapter, createFluxKontextAdapter } from "./adapter.js";
import { type FluxKontextEditor, loadFluxKontext } from "./flux-kontext-editor.js";
import {
  type FluxKontextPolicy,
  type LoadFluxKontextPolicyOptions,
  loadFluxKontextPolicy,
} from "./flux-kontext-policy.js";
import { type TinyReplica, writeTinyKontextReplica } from "./test-replica.js";

let tmp: string;
let replica: TinyReplica;
let policy: FluxKontextPolicy;
let editor: FluxKontextEditor;

// The tiny replica's VAE has factor 2, so a 16×16 bucket is an 8×8 latent: 16 tokens of 16 channels.
const BUCKET = { width: 16, height: 16 };
const TINY: Omit<LoadFluxKontextPolicyOptions, "model"> = {
  resolution: BUCKET,
  maxSequenceLength: 16,
  threads: 1,
  lora: { rank: 4, alpha: 8 },
};
const TOKENS = 16;
const CHANNELS = 16;
const D = TOKENS * CHANNELS;

function sourceImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101) % 256;
  return { width, height, data };
}

// Sources of another size than the bucket, so the resize path is exercised.
const requests: EditRequest[] = [
  { key: "a", instruction: "make the cat red", source: sourceImage(20, 11, 1) },
  { key: "b", instruction: "make the cat blue", source: sourceImage(12, 24, 2) },
];

/** Loads the base editor with the policy's rollout protocol (the bucket as the only resolution). */
function rolloutEditor(lora?: string) {
  return loadFluxKontext({
    model: replica.dir,
    preset: "rollout",
    resolutions: [[BUCKET.width, BUCKET.height]],
    outputSize: BUCKET,
    maxSequenceLength: 16,
    threads: 1,
    ...(lora ? { lora } : {}),
  });
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** θ with every lora_B set to small random values, so the LoRA changes the model. */
function withRandomB(params: ParamSet, seed: number): ParamSet {
  const rng = new Rng(seed);
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => [
      k,
      k.endsWith(".lora_B.weight") ? rng.normals(v.length).map((x) => x * 0.05) : Float32Array.from(v),
    ]),
  );
}

/** The editor's base velocity for each request at (x, sigma), concatenated batch-first. */
async function editorVelocity(e: FluxKontextEditor, x: Float32Array, sigma: number) {
  const out = new Float32Array(x.length);
  for (const [i, r] of requests.entries()) {
    const prepared = await e.prepareEdit(r);
    out.set(await prepared.velocity(x.subarray(i * D, (i + 1) * D), sigma, 0), i * D);
  }
  return out;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "flux-kontext-policy-"));
  replica = await writeTinyKontextReplica(join(tmp, "pipeline"));
  policy = await loadFluxKontextPolicy({ model: replica.dir, ...TINY });
  editor = await rolloutEditor();
});

afterAll(async () => {
  await policy?.dispose();
  await editor?.close();
  await closeDefaultRuntime();
  await rm(tmp, { recursive: true, force: true });
});

describe("FluxKontextPolicy on a tiny random replica", () => {
  it("declares the bucket's latent shape, Edit-R1's schedule and LoRA factors on the Edit-R1 targets", async () => {
    expect(policy.latentSize(requests[0]!)).toBe(D);
    const sigmas = policy.sigmas(requests);
    expect(sigmas).toHaveLength(7);
    expect(sigmas[0]).toBe(1);
    expect(sigmas[6]).toBe(0);
    // The editor computes diffusers' dynamic-shift schedule for the same target tokens.
    expect(sigmas).toEqual((await editor.prepareEdit(requests[0]!)).sigmas);
    // 2 double blocks × 8 targets + 2 single blocks × to_q/k/v, two factors each.
    const keys = Object.keys(policy.parameterShapes);
    expect(keys).toHaveLength(2 * (2 * 8 + 2 * 3));
    expect(policy.parameterShapes["transformer_blocks.0.attn.to_q.lora_A.weight"]).toEqual([4, 32]);
    expect(policy.parameterShapes["transformer_blocks.1.attn.to_add_out.lora_B.weight"]).toEqual([32, 4]);
    expect(policy.parameterShapes["single_transformer_blocks.1.attn.to_v.lora_B.weight"]).toEqual([32, 4]);
    const init = policy.initialParameters();
    const a = init["transformer_blocks.0.attn.to_q.lora_A.weight"]!;
    const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    expect(std).toBeGreaterThan(0.15); // N(0, (1/4)²)
    expect(std).toBeLessThan(0.35);
    for (const k of keys.filter((k) => k.endsWith("lora_B.weight"))) expect(maxAbs(init[k]!)).toBe(0);
  });

  it("rolls out with the editor's base velocity while B = 0, and with another one once B moves", async () => {
    const x = new Rng(5).normals(2 * D);
    const sigma = policy.sigmas(requests)[2]!;
    const base = await editorVelocity(editor, x, sigma);
    const v0 = await policy.velocity(requests, policy.initialParameters())(x, sigma, 2);
    expect(maxAbs(base)).toBeGreaterThan(0.01);
    expect(maxAbsDiff(v0, base)).toBeLessThan(1e-5);
    const v1 = await policy.velocity(requests, withRandomB(policy.initialParameters(), 1))(x, sigma, 2);
    expect(maxAbsDiff(v1, base)).toBeGreaterThan(1e-3);
  });

  it("gives finite gradients for every LoRA factor, and a zero KL term while θ = θ_old with B = 0", async () => {
    const rng = new Rng(9);
    const sigmas = policy.sigmas(requests);
    const batch: NftBatch = {
      requests,
      x0: rng.normals(2 * D),
      noise: rng.normals(2 * D),
      t: Float64Array.of(sigmas[1]!, sigmas[3]!),
      advantages: Float64Array.of(1, -1),
      validMask: Uint8Array.of(1, 1),
      settings: DEFAULT_NFT_SETTINGS,
    };
    const params = policy.initialParameters();
    const step = await policy.lossAndGradients(batch, params, policy.initialParameters());
    expect(Number.isFinite(step.loss)).toBe(true);
    expect(step.loss).toBeGreaterThan(0);
    expect(Math.abs(step.klLoss)).toBeLessThan(1e-10);
    expect(Object.keys(step.gradients).sort()).toEqual(Object.keys(policy.parameterShapes).sort());
    for (const [k, shape] of Object.entries(policy.parameterShapes)) {
      const g = step.gradients[k]!;
      expect(g.length, k).toBe(shape[0]! * shape[1]!);
      expect(g.every(Number.isFinite), k).toBe(true);
      // With B = 0 the loss does not depend on A (dL/dA = Bᵀ…), but it does on every B.
      if (k.endsWith("lora_A.weight")) expect(maxAbs(g), k).toBe(0);
      else expect(maxAbs(g), k).toBeGreaterThan(0);
    }
    // Once B moves away from θ_old's, the KL-to-reference term and the A gradients come alive.
    const moved = await policy.lossAndGradients(batch, withRandomB(params, 2), params);
    expect(moved.klLoss).toBeGreaterThan(1e-8);
    expect(maxAbs(moved.gradients["transformer_blocks.0.attn.to_q.lora_A.weight"]!)).toBeGreaterThan(0);
  });

  it("checkpoints per block through the adapter's load options: the same loss and gradients, a lower peak", async () => {
    const tinyAdapter = createFluxKontextAdapter({
      threads: 1,
      maxSequenceLength: 16,
      lora: { rank: 4, alpha: 8 },
      resolution: BUCKET,
    });
    expect(tinyAdapter.capabilities.recompute).toBe(true);
    const checkpointed = (await tinyAdapter.loadPolicy!({
      model: replica.dir,
      recompute: true,
    })) as FluxKontextPolicy;
    try {
      const rng = new Rng(21);
      const sigmas = policy.sigmas(requests);
      const batch: NftBatch = {
        requests,
        x0: rng.normals(2 * D),
        noise: rng.normals(2 * D),
        t: Float64Array.of(sigmas[2]!, sigmas[4]!),
        advantages: Float64Array.of(0.7, -1.3),
        validMask: Uint8Array.of(1, 1),
        settings: DEFAULT_NFT_SETTINGS,
      };
      // Every factor moved (B ≠ 0, θ ≠ θ_old), so every gradient and both loss terms are alive.
      const oldParams = withRandomB(policy.initialParameters(), 22);
      const params = withRandomB(policy.initialParameters(), 23);
      const plain = await policy.lossAndGradients(batch, params, oldParams);
      const ckpt = await checkpointed.lossAndGradients(batch, params, oldParams);
      expect(plain.klLoss).toBeGreaterThan(1e-8);
      // The recomputed forward runs the same ops on the same inputs; only kernel scheduling (onnxruntime's fusion
      // and summation order in a differently shaped graph) may differ, i.e. float32 round-off.
      expect(Math.abs(ckpt.loss - plain.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(plain.loss));
      expect(Math.abs(ckpt.klLoss - plain.klLoss)).toBeLessThanOrEqual(1e-6 * Math.abs(plain.klLoss) + 1e-12);
      expect(Object.keys(ckpt.gradients).sort()).toEqual(Object.keys(plain.gradients).sort());
      for (const [k, g] of Object.entries(plain.gradients)) {
        expect(maxAbs(g), k).toBeGreaterThan(0);
        expect(maxAbsDiff(ckpt.gradients[k]!, g), k).toBeLessThanOrEqual(1e-5 * maxAbs(g));
      }

      // The fused training graph recomputes the blocks, and keeps fewer activations alive at once.
      const without = policy.graphs(requests[0]!, 2).training;
      const withRecompute = checkpointed.graphs(requests[0]!, 2).training;
      expect(without.graph.nodes.some((n) => n.attrs[RECOMPUTE_OF_ATTR] !== undefined)).toBe(false);
      expect(withRecompute.graph.nodes.some((n) => n.attrs[RECOMPUTE_OF_ATTR] !== undefined)).toBe(true);
      const peak = (g: typeof without) => planMemory(g.graph, g.outputs).peakActivationBytes;
      expect(peak(withRecompute)).toBeLessThan(peak(without));
    } finally {
      await checkpointed.dispose();
    }
  });

  it("trains end to end with core's train() and exports a LoRA loadFluxKontext applies", async () => {
    // Mean brightness of the decoded edit: any differentiable-looking score in [0, 1] will do here.
    const brightness: Reward = {
      name: "brightness",
      score: async (batch) =>
        batch.map((item) => {
          const score = item.edited.data.reduce((s, v) => s + v, 0) / (item.edited.data.length * 255);
          return { score, components: { brightness: score } };
        }),
    };
    const outDir = join(tmp, "run");
    const result = await train({
      policy,
      sampler: new DpmSolverPlusPlus2MSampler(),
      reward: brightness,
      prompts: promptSetFromRequests(requests),
      outDir,
      config: {
        seed: 3,
        steps: 2,
        promptsPerBatch: 2,
        groupSize: 2,
        rolloutBatches: 1,
        trainBatchSize: 2,
        checkpointEvery: 2,
        sampleGridEvery: 0,
        optimizer: { lr: 1e-3 },
        filter: { enabled: false },
      },
      progress: null,
    });
    expect(result.step).toBe(2);
    expect(result.metrics).toHaveLength(2);
    for (const m of result.metrics) {
      expect(Number.isFinite(m.loss)).toBe(true);
      expect(m.gradNorm).toBeGreaterThan(0);
    }
    const emaB = result.emaParams["transformer_blocks.0.attn.to_q.lora_B.weight"]!;
    expect(maxAbs(emaB)).toBeGreaterThan(0);

    const loraDir = result.loraDir!;
    const config = JSON.parse(await readFile(join(loraDir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 8 });
    const lora = await readLora(loraDir);
    expect(lora.modules).toHaveLength(2 * 8 + 2 * 3);
    // The editor with the exported LoRA has the policy's velocity under the EMA weights.
    const tuned = await rolloutEditor(loraDir);
    try {
      const x = new Rng(6).normals(2 * D);
      const sigma = policy.sigmas(requests)[1]!;
      const expected = await policy.velocity(requests, result.emaParams)(x, sigma, 1);
      expect(maxAbsDiff(await editorVelocity(tuned, x, sigma), expected)).toBeLessThan(1e-5);
      expect(maxAbsDiff(await editorVelocity(editor, x, sigma), expected)).toBeGreaterThan(0);
      const [edited] = await tuned.edit([requests[0]!]);
      expect([edited!.width, edited!.height]).toEqual([16, 16]);
    } finally {
      await tuned.close();
    }

    // The adapter trains on from a LoRA folder: θ₀ is its factors.
    const resumed = await adapter.loadPolicy!({ model: replica.dir, lora: loraDir });
    try {
      const init = resumed.initialParameters();
      expect(Object.keys(init).sort()).toEqual(Object.keys(result.emaParams).sort());
      for (const [k, v] of Object.entries(result.emaParams)) expect(maxAbsDiff(init[k]!, v), k).toBe(0);
    } finally {
      await (resumed as FluxKontextPolicy).dispose();
    }
  });
});

describe("FluxKontextPolicy errors and the adapter", () => {
  it("rejects a bucket the VAE and packing cannot tile, and targets that match nothing", async () => {
    await expect(
      loadFluxKontextPolicy({ model: replica.dir, ...TINY, resolution: { width: 18, height: 16 } }),
    ).rejects.toThrow(/resolution 18×16: both sides must be positive multiples of 4/);
    await expect(
      loadFluxKontextPolicy({ model: replica.dir, ...TINY, lora: { rank: 4, targets: ["attn.to_nothing"] } }),
    ).rejects.toThrow(/LoRA targets \["attn.to_nothing"\] match no Linear layer/);
  });

  it("refuses to start from a LoRA with factors this transformer does not have", async () => {
    const factor = (shape: number[]) => ({ shape, data: new Float32Array(shape[0]! * shape[1]!) });
    const modules = ["transformer_blocks.0.attn.to_q", "transformer_blocks.7.attn.to_q"];
    const factors = new Map(
      modules.flatMap((m) => [
        [`${m}.lora_A.weight`, factor([2, 32])] as const,
        [`${m}.lora_B.weight`, factor([32, 2])] as const,
      ]),
    );
    await expect(
      loadFluxKontextPolicy({
        model: replica.dir,
        ...TINY,
        initialLora: { rank: 2, alpha: 2, modules, factors },
      }),
    ).rejects.toThrow(/2 LoRA factor\(s\) target modules this model does not have .*"transformer_blocks.7/);
  });

  it("rejects a source whose bytes do not match its size before rolling out", () => {
    const bad = { ...requests[0]!, source: { width: 20, height: 11, data: new Uint8Array(9) } };
    expect(() => policy.velocity([bad], policy.initialParameters())).toThrow(
      /claims 20×11 RGB but has 9 bytes/,
    );
  });

  it("is trainable, with Edit-R1's sampler, judge and benchmark as defaults", async () => {
    expect(adapter.capabilities.trainable).toBe(true);
    expect(adapter.trainDefaults).toMatchObject({ sampler: "dpm2", reward: "mllm", benchmark: "imgedit" });
    expect(adapter.trainDefaults?.config).toMatchObject({ groupSize: 12, trainBatchSize: 3 });
    expect(() => checkAdapter(adapter, { model: replica.dir, lora: "x", loraScale: 0.5 }, "train")).toThrow(
      /--lora-scale 0.5 cannot be used for training/,
    );
  });
});
