import {
  DEFAULT_NFT_SETTINGS,
  DpmSolverPlusPlus2MSampler,
  type Editor,
  type EditRequest,
  Rng,
} from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { generateEdits, VOCABULARY } from "@edit-r1/shapes";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TinyAdapterError } from "./errors.js";
import { initTinyWeights, tinyWeightShapes } from "./init-weights.js";
import { loadTinyPolicy, type TinyPolicy, tinyAdapter } from "./tiny-adapter.js";
import { tinyConditions } from "./tiny-conditions.js";
import { TINY_IMAGE_SIZE, TINY_LATENT_SIZE } from "./tiny-config.js";
import { readTinyWeights } from "./tiny-weights.js";
import { verifierScore } from "./verifier-score.js";

let adapter: TinyPolicy;
beforeAll(async () => {
  adapter = await loadTinyPolicy({ lora: { rank: 4 } });
}, 60_000);
afterAll(async () => {
  await adapter?.dispose();
  await closeDefaultRuntime();
});

const requestsOf = (count: number, seed = 11): EditRequest[] =>
  generateEdits({ seed, count, split: "heldout", size: TINY_IMAGE_SIZE }).map((e) => ({
    key: e.key,
    instruction: e.instruction,
    source: e.source,
  }));

describe("shipped weights", () => {
  it("load, with exactly the weights the architecture asks for", async () => {
    const weights = await readTinyWeights();
    const flux = adapter.model.flux;
    const expected = tinyWeightShapes(flux, weights.config.vocabulary.length, weights.config.textTokens);
    expect([...weights.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, shape] of expected) expect(weights.tensors.get(k)!.shape, k).toEqual(shape);
    // The rows of the word table follow the shapes vocabulary (new words may only be appended).
    expect(VOCABULARY.slice(0, weights.config.vocabulary.length)).toEqual(weights.config.vocabulary);
    // Trained, not fresh: the output projection starts at zero.
    const init = initTinyWeights(flux, { seed: 0, vocabSize: VOCABULARY.length, textTokens: 20 });
    expect(init.get("proj_out.weight")!.every((v) => v === 0)).toBe(true);
    expect(weights.tensors.get("proj_out.weight")!.data.some((v) => v !== 0)).toBe(true);
  });

  it("edit better than a no-op editor on held-out shapes edits (but imperfectly)", async () => {
    const identity: Editor = {
      name: "identity",
      protocol: {},
      edit: async (requests) => requests.map((r) => r.source),
    };
    const options = { count: 16, seed: 1 };
    const noop = await verifierScore(identity, options);
    const base = await verifierScore(adapter.editor(), options);
    console.log(`tiny base model, held-out verifier mean over 16: ${base.mean.toFixed(3)}`, base.categories);
    expect(base.mean).toBeGreaterThan(noop.mean + 0.05);
    expect(base.mean).toBeLessThan(0.95);
  }, 120_000);
});

describe("the tiny policy as a TrainablePolicy", () => {
  it("declares its capabilities and schedule", () => {
    expect(tinyAdapter.capabilities.resolutions).toEqual([[16, 16]]);
    expect(tinyAdapter.capabilities.guidance).toBe("none");
    const requests = requestsOf(2);
    expect(adapter.latentSize(requests[0]!)).toBe(TINY_LATENT_SIZE);
    const sigmas = adapter.sigmas(requests);
    expect(sigmas.length).toBe(7);
    expect(sigmas[0]).toBe(1);
    expect(sigmas[6]).toBe(0);
    expect(new DpmSolverPlusPlus2MSampler().name).toBe("dpm-solver++2m");
  });

  it("rejects other image sizes and unknown words, saying what to do", () => {
    const [r] = requestsOf(1);
    const small = { ...r!, source: { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) } };
    expect(() => adapter.latentSize(small)).toThrow(TinyAdapterError);
    expect(() => adapter.velocity([small], adapter.initialParameters())).toThrow(
      /16×16 images only, got 32×32/,
    );
    const odd = { ...r!, instruction: "paint the circle mauve" };
    expect(() => adapter.velocity([odd], adapter.initialParameters())).toThrow(/"paint", "mauve"/);
  });

  it("initialises LoRA as PEFT does: A Gaussian with std 1/r, B zero, on the Edit-R1 targets", () => {
    const p = adapter.initialParameters();
    const keys = Object.keys(p);
    expect(keys).toContain("transformer_blocks.0.attn.to_q.lora_A.weight");
    expect(keys).toContain("transformer_blocks.1.attn.to_add_out.lora_B.weight");
    expect(keys).toContain("single_transformer_blocks.1.attn.to_v.lora_A.weight");
    expect(keys.some((k) => k.includes("proj_mlp") || k.includes(".ff."))).toBe(false);
    const a = keys.filter((k) => k.endsWith("lora_A.weight")).flatMap((k) => [...p[k]!]);
    const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    expect(std).toBeGreaterThan(0.25 * 0.95);
    expect(std).toBeLessThan(0.25 * 1.05);
    for (const k of keys.filter((k) => k.endsWith("lora_B.weight")))
      expect(p[k]!.every((v) => v === 0)).toBe(true);
  });

  it("with B = 0 gives exactly the base model's velocity", async () => {
    const requests = requestsOf(2);
    const x = new Rng(4).normals(2 * TINY_LATENT_SIZE);
    const withLora = await adapter.velocity(requests, adapter.initialParameters())(x, 0.7, 0);
    const base = await adapter.model.velocity(
      tinyConditions(requests, adapter.model.vocabulary, adapter.model.textTokens),
      undefined,
      2,
    )(x, 0.7, 0);
    expect(withLora).toEqual(base);
    // A non-zero B changes it, so the comparison above can fail.
    const p = adapter.initialParameters();
    p["transformer_blocks.0.attn.to_q.lora_B.weight"]!.fill(0.05);
    const moved = await adapter.velocity(requests, p)(x, 0.7, 0);
    expect(moved).not.toEqual(base);
  }, 60_000);

  it("runs one NFT step with finite gradients for every LoRA parameter", async () => {
    const requests = requestsOf(2);
    const rng = new Rng(9);
    const theta = adapter.initialParameters();
    const old = adapter.initialParameters();
    const result = await adapter.lossAndGradients(
      {
        requests,
        x0: rng.normals(2 * TINY_LATENT_SIZE),
        noise: rng.normals(2 * TINY_LATENT_SIZE),
        t: Float64Array.of(0.8, 0.4),
        advantages: Float64Array.of(1.5, -0.7),
        validMask: Uint8Array.of(1, 1),
        settings: DEFAULT_NFT_SETTINGS,
      },
      theta,
      old,
    );
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(Object.keys(result.gradients).sort()).toEqual(Object.keys(theta).sort());
    for (const [k, g] of Object.entries(result.gradients)) {
      expect(g.length, k).toBe(theta[k]!.length);
      expect(g.every(Number.isFinite), k).toBe(true);
    }
    // B receives gradient (A does not while B = 0: d/dA of B·A·x vanishes).
    const bNorm = Object.entries(result.gradients)
      .filter(([k]) => k.endsWith("lora_B.weight"))
      .reduce((s, [, g]) => s + g.reduce((a, v) => a + v * v, 0), 0);
    expect(bNorm).toBeGreaterThan(0);
  }, 60_000);

  it("decodes latents to clamped 16×16 images and rolls out through its velocity", async () => {
    const requests = requestsOf(2);
    const images = await adapter.decode(new Float32Array(2 * TINY_LATENT_SIZE).fill(2), requests);
    expect(images.map((i) => [i.width, i.height])).toEqual([
      [16, 16],
      [16, 16],
    ]);
    expect(images[0]!.data.every((v) => v === 255)).toBe(true);
    const noise = new Rng(2).normals(2 * TINY_LATENT_SIZE);
    const { x0 } = await new DpmSolverPlusPlus2MSampler().sample(
      noise,
      adapter.sigmas(requests),
      adapter.velocity(requests, adapter.initialParameters()),
    );
    expect(x0.every(Number.isFinite)).toBe(true);
  }, 60_000);
});
