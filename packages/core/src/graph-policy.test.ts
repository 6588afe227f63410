import { evaluate, Graph, RECOMPUTE_OF_ATTR, Runtime } from "@edit-r1/engine";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, ShapeError } from "./errors.js";
import { GraphNftPolicyCore, GraphPolicyError } from "./graph-policy.js";
import { DEFAULT_NFT_SETTINGS, type NftSettings, nftLoss } from "./nft-loss.js";
import type { ParamSet } from "./params.js";
import { Rng } from "./rng.js";
import { velocityMlp } from "./test-velocity-mlp.js";
import type { NftBatch } from "./trainable-policy.js";

const TOKENS = 4;
const CHANNELS = 3;
const COND = 5;
const D = TOKENS * CHANNELS;
const B = 3;
const mlp = velocityMlp({ tokens: TOKENS, channels: CHANNELS, condDim: COND, hidden: 8, rank: 2, seed: 11 });
const runtime = new Runtime();
const core = new GraphNftPolicyCore(mlp.spec, { runtime, threads: 1 });

afterAll(async () => {
  await core.dispose();
  await runtime.close();
});

const rng = new Rng(5);
const conditions = { cond: rng.normals(B * COND) };
// Values float32 holds exactly: the graph's constants (β, 1 ± β, the KL weight) are float32.
const SETTINGS: NftSettings = { beta: 0.75, klWeight: 0.25, advClipMax: 5, advMode: "all" };

function makeBatch(seed: number, settings: NftSettings = SETTINGS, validMask = [1, 1, 0]): NftBatch {
  const r = new Rng(seed);
  return {
    requests: Array.from({ length: B }, (_, i) => ({
      key: `k${i}`,
      instruction: `i${i}`,
      source: { width: 1, height: 1, data: new Uint8Array(3) },
    })),
    x0: r.normals(B * D),
    noise: r.normals(B * D),
    t: Float64Array.from([0.9, 0.55, 0.3]),
    advantages: Float64Array.from([1.4, -0.8, 0.2]),
    validMask: Uint8Array.from(validMask),
    settings,
  };
}

/** v(x_t, t | cond) of the spec under `params` (undefined: the base model), by the float64 interpreter. */
function interpretedVelocity(
  params: Record<string, ArrayLike<number>> | undefined,
  xt: ArrayLike<number>,
  t: ArrayLike<number>,
): Float64Array {
  const g = new Graph();
  const x = g.input("x", "float32", [B, TOKENS, CHANNELS]);
  const tt = g.input("t", "float32", [B]);
  const cond = { cond: g.input("cond", "float32", [B, COND]) };
  const p = params
    ? Object.fromEntries(Object.entries(mlp.spec.parameters).map(([k, s]) => [k, g.input(k, "float32", s)]))
    : undefined;
  const v = mlp.spec.buildVelocity(g, x, tt, cond, p);
  return evaluate(g, { x: xt, t, cond: conditions.cond, ...(params ?? {}) }, [v])[0]!;
}

function xtOf(batch: NftBatch): Float64Array {
  return Float64Array.from(batch.x0, (x, i) => {
    const t = Math.fround(batch.t[Math.floor(i / D)]!); // what the graph sees: t is fed as float32
    return (1 - t) * x + t * batch.noise[i]!;
  });
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number): number {
  expect(actual.length).toBe(expected.length);
  const scale = Math.max(maxAbs(expected), 1e-12);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst).toBeLessThanOrEqual(relTol * scale);
  return worst / scale;
}

const flat = (p: ParamSet) => Object.values(p).flatMap((v) => Array.from(v));

describe("GraphNftPolicyCore.velocity", () => {
  it("equals the interpreter's velocity of the same spec, per sample and sigma", async () => {
    const params = mlp.initialParameters(1, true);
    const x = rng.normals(B * D);
    const v = await core.velocity(conditions, params, B)(x, 0.62, 0);
    const expected = interpretedVelocity(params, x, [0.62, 0.62, 0.62]);
    expectClose(v, expected, 1e-5);
    // The LoRA is live: the base model gives something else.
    const baseV = interpretedVelocity(undefined, x, [0.62, 0.62, 0.62]);
    expect(maxAbs(baseV.map((b, i) => b - expected[i]!))).toBeGreaterThan(1e-2);
  });

  it("checks inputs where they are passed, naming them", async () => {
    const params = mlp.initialParameters(1);
    expect(() => core.velocity({ cond: new Float64Array(B * COND) }, params, B)).toThrow(
      /condition "cond" is a Float64Array .* pass a Float32Array/,
    );
    expect(() => core.velocity({ cond: new Float32Array(COND) }, params, B)).toThrow(ShapeError);
    expect(() => core.velocity({}, params, B)).toThrow(ConfigError);
    expect(() => core.velocity({ ...conditions, extra: new Float32Array(1) }, params, B)).toThrow(/unknown/);
    const { "mlp.0.lora_A.weight": _dropped, ...partial } = params;
    expect(() => core.velocity(conditions, partial, B)).toThrow(/missing \["mlp.0.lora_A.weight"\]/);
    const fn = core.velocity(conditions, params, B);
    await expect(async () => fn(new Float32Array(D), 0.5, 0)).rejects.toThrow(/x has 12 values/);
  });
});

describe("GraphNftPolicyCore.lossAndGradients", () => {
  it("matches nftLoss on the interpreter's v_θ, v_old and v_ref", async () => {
    const params = mlp.initialParameters(2, true);
    const oldParams = mlp.initialParameters(3, true);
    const batch = makeBatch(21);
    const out = await core.lossAndGradients(conditions, batch, params, oldParams);
    const xt = xtOf(batch);
    const ref = nftLoss({
      ...SETTINGS,
      x0: batch.x0,
      noise: batch.noise,
      t: Float32Array.from(batch.t),
      vTheta: interpretedVelocity(params, xt, Float32Array.from(batch.t)),
      vOld: interpretedVelocity(oldParams, xt, Float32Array.from(batch.t)),
      vRef: interpretedVelocity(undefined, xt, Float32Array.from(batch.t)),
      advantages: batch.advantages,
      validMask: batch.validMask,
    });
    expect(ref.klLoss).toBeGreaterThan(1e-3);
    expectClose([out.loss], [ref.loss], 1e-5);
    expectClose([out.policyLoss], [ref.policyLoss], 1e-5);
    expectClose([out.klLoss], [ref.klLoss], 1e-5);
  });

  it("gives θ gradients equal to central finite differences through v_θ (stop-gradient weights)", async () => {
    const params = mlp.initialParameters(4, true);
    const oldParams = mlp.initialParameters(5, true);
    // Advantages whose r (0.75, 0.375, 0.5625) float32 holds exactly, so the float64 comparison is exact.
    const batch = { ...makeBatch(22), advantages: Float64Array.from([2.5, -1.25, 0.625]) };
    const xt = xtOf(batch);
    const t = Float32Array.from(batch.t);
    const vOld = interpretedVelocity(oldParams, xt, t);
    const vRef = interpretedVelocity(undefined, xt, t);
    const lossAt = (p: ParamSet) =>
      nftLoss({
        ...SETTINGS,
        x0: batch.x0,
        noise: batch.noise,
        t,
        vTheta: interpretedVelocity(p, xt, t),
        vOld,
        vRef,
        advantages: batch.advantages,
        validMask: batch.validMask,
      });
    // With the adaptive weights held, d loss/dθ = (d loss/d v_θ)ᵀ · d v_θ/dθ: finite differences of
    // s(θ) = Σ g·v_θ(θ) with g = nftLoss's stop-gradient d loss/d v_θ, frozen at θ.
    const gv = lossAt(params).gradVTheta;
    const h = 1e-5;
    const fd: number[] = [];
    for (const [name, values] of Object.entries(params)) {
      for (let i = 0; i < values.length; i++) {
        const shifted = (delta: number) => {
          const p: Record<string, Float64Array> = {};
          for (const [k, v] of Object.entries(params)) p[k] = Float64Array.from(v);
          p[name]![i] = values[i]! + delta;
          const v = interpretedVelocity(p, xt, t);
          return v.reduce((a, vi, j) => a + vi * gv[j]!, 0);
        };
        fd.push((shifted(h) - shifted(-h)) / (2 * h));
      }
    }
    expect(maxAbs(fd)).toBeGreaterThan(1e-3);

    // The training graph in float64 (interpreter) is exact up to the finite-difference error…
    const { graph, outputs } = core.trainingGraph(B, SETTINGS);
    const names = Object.keys(mlp.spec.parameters);
    const exact = evaluate(
      graph,
      core.trainingFeeds(conditions, batch, params, oldParams),
      names.map((n) => outputs[`grad.${n}`]!),
    ).flatMap((a) => Array.from(a));
    const interpRel = expectClose(exact, fd, 1e-8);
    // …and onnxruntime in float32 agrees to float32 rounding.
    const out = await core.lossAndGradients(conditions, batch, params, oldParams);
    const ortRel = expectClose(flat(out.gradients), fd, 1e-4);
    console.log(
      `graph policy θ gradient vs finite differences: interpreter ${interpRel.toExponential(2)}, onnxruntime fp32 ${ortRel.toExponential(2)} (relative to max |grad|)`,
    );
  });

  it("with θ = θ_old and zero LoRA B: v_θ = v_old = v_ref, no KL, and the policy loss of nftLoss", async () => {
    const params = mlp.initialParameters(6);
    const batch = makeBatch(23);
    const out = await core.lossAndGradients(conditions, batch, params, params);
    const xt = xtOf(batch);
    const t = Float32Array.from(batch.t);
    const v = interpretedVelocity(undefined, xt, t);
    const ref = nftLoss({
      ...SETTINGS,
      x0: batch.x0,
      noise: batch.noise,
      t,
      vTheta: v,
      vOld: v,
      vRef: v,
      advantages: batch.advantages,
      validMask: batch.validMask,
    });
    expect(Math.abs(out.klLoss)).toBeLessThan(1e-12);
    expectClose([out.policyLoss], [ref.policyLoss], 1e-5);
    // B = 0 kills A's gradient; B's gradient is what starts the training.
    expect(maxAbs(out.gradients["mlp.0.lora_A.weight"]!)).toBe(0);
    expect(maxAbs(out.gradients["mlp.2.lora_B.weight"]!)).toBeGreaterThan(1e-4);
  });

  it("compiles per NFT settings: the KL weight enters the loss as loss = policy + w·KL", async () => {
    const params = mlp.initialParameters(7, true);
    const oldParams = mlp.initialParameters(8, true);
    const a = await core.lossAndGradients(conditions, makeBatch(24), params, oldParams);
    const heavy = { ...SETTINGS, klWeight: 3 };
    const b = await core.lossAndGradients(conditions, makeBatch(24, heavy), params, oldParams);
    expectClose([b.policyLoss, b.klLoss], [a.policyLoss, a.klLoss], 1e-6);
    expectClose([a.loss], [a.policyLoss + SETTINGS.klWeight * a.klLoss], 1e-6);
    expectClose([b.loss], [b.policyLoss + 3 * b.klLoss], 1e-6);
    // advMode only shapes r on the TS side: "positive_only" maps the negative advantage to r = 0.5.
    const pos = await core.lossAndGradients(
      conditions,
      makeBatch(24, { ...SETTINGS, advMode: "positive_only" }),
      params,
      oldParams,
    );
    expect(Math.abs(pos.policyLoss - a.policyLoss)).toBeGreaterThan(1e-6);
    expect(DEFAULT_NFT_SETTINGS.advMode).toBe("all");
  });

  it("gives the same result with v_θ in a recompute region (gradient checkpointing)", async () => {
    const params = mlp.initialParameters(12, true);
    const oldParams = mlp.initialParameters(13, true);
    const checkpointed = new GraphNftPolicyCore(mlp.spec, { runtime, threads: 1, recompute: true });
    try {
      const { graph } = checkpointed.trainingGraph(B, SETTINGS);
      expect(graph.nodes.some((n) => n.attrs[RECOMPUTE_OF_ATTR] !== undefined)).toBe(true);
      const a = await core.lossAndGradients(conditions, makeBatch(27), params, oldParams);
      const b = await checkpointed.lossAndGradients(conditions, makeBatch(27), params, oldParams);
      expectClose([b.loss], [a.loss], 1e-6);
      expectClose(flat(b.gradients), flat(a.gradients), 1e-5);
    } finally {
      await checkpointed.dispose();
    }
  });

  it("returns zero loss and zero gradients for an all-masked batch", async () => {
    const params = mlp.initialParameters(9, true);
    const out = await core.lossAndGradients(
      conditions,
      makeBatch(25, SETTINGS, [0, 0, 0]),
      params,
      mlp.initialParameters(10, true),
    );
    expect([out.loss, out.policyLoss, out.klLoss]).toEqual([0, 0, 0]);
    expect(maxAbs(flat(out.gradients))).toBe(0);
  });

  it("rejects a batch whose arrays disagree, and any call after dispose", async () => {
    const params = mlp.initialParameters(1);
    const bad = { ...makeBatch(26), noise: new Float32Array(5) };
    await expect(core.lossAndGradients(conditions, bad, params, params)).rejects.toThrow(
      /noise has 5 values/,
    );
    const other = new GraphNftPolicyCore(mlp.spec, { runtime, threads: 1 });
    await other.dispose();
    await expect(other.lossAndGradients(conditions, makeBatch(26), params, params)).rejects.toThrow(
      GraphPolicyError,
    );
    expect(() => new GraphNftPolicyCore({ ...mlp.spec, latentShape: [4, 0] })).toThrow(/latentShape \[4,0\]/);
  });
});
