import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  closeDefaultRuntime,
  compile,
  evaluate,
  float32ToBfloat16,
  Graph,
  GraphError,
  ops,
  writeSafetensors,
} from "@edit-r1/engine";
import {
  fixturesOfKind,
  maxAbsDiff,
  noise,
  readAllFloat32,
  readFixtureIo,
  relativeL2,
} from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseFluxTransformerConfig } from "./flux-config.js";
import {
  buildFluxTransformer,
  type FluxTransformerOptions,
  fluxTransformerInputs,
} from "./flux-transformer.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { memoryWeightSource, type WeightEntry, WeightError, type WeightSource } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Relative L2 to the fp32 diffusers reference that fp32 rounding explains: the reference itself carries
 * it (unit roundoff 2^-24 ≈ 6e-8 per operation). Measured on flux-kontext-transformer: float64 interpreter
 * 7.7e-7, onnxruntime fp32 3.1e-7, onnxruntime vs interpreter 7.9e-7; on held-out fixtures (batch 2, other
 * grids, context sizes and configs): at most 9.2e-7, 3.8e-7 and 9.1e-7. A wrong rotary axis, context offset
 * or modulation half costs > 1e-2.
 */
const FP32_PARITY = 3e-6;

const fixtures = fixturesOfKind("flux-transformer");

afterAll(async () => {
  await closeDefaultRuntime();
});

it("finds at least one flux-transformer fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

describe.each(fixtures.map((f) => [f.name, f] as const))("FLUX transformer vs fixture %s", (_, fixture) => {
  const config = parseFluxTransformerConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
  let io: Tensors;
  let fp32: Tensors;
  let tmp: string;
  beforeAll(async () => {
    io = await readFixtureIo(fixture);
    fp32 = await readAllFloat32(fixture.weightsPath);
    tmp = await mkdtemp(join(tmpdir(), "flux-fixture-"));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const feeds = (override: Record<string, Float32Array> = {}) => {
    const f: Record<string, Float32Array> = {};
    for (const [name, t] of io) if (name.startsWith("in.")) f[name.slice(3)] = t.data;
    return { ...f, ...override };
  };
  const sizes = () => {
    const hs = io.get("in.hidden_states")!.shape;
    return { batch: hs[0]!, imageTokens: hs[1]!, textTokens: io.get("in.encoder_hidden_states")!.shape[1]! };
  };
  const reference = () => io.get("out.sample")!.data;
  /** Relative L2 of `out` to the reference, printed, and below FP32_PARITY. */
  const expectParity = (what: string, out: ArrayLike<number>) => {
    const err = relativeL2(out, reference());
    console.log(`${fixture.name}: ${what} relative L2 = ${err.toExponential(2)} (bound ${FP32_PARITY})`);
    expect(err, what).toBeLessThan(FP32_PARITY);
  };
  const inMemory = (
    tensors: Tensors,
    edit: (name: string, data: Float32Array) => Float32Array = (_n, d) => d,
  ) =>
    memoryWeightSource(
      new Map([...tensors].map(([n, t]) => [n, { dtype: "float32", shape: t.shape, data: edit(n, t.data) }])),
    );
  /** Builds one forward pass over graph inputs and evaluates it in float64. */
  const build = (weights: WeightSource, options?: FluxTransformerOptions) => {
    const g = new Graph("flux");
    return {
      g,
      ...buildFluxTransformer(g, config, weights, fluxTransformerInputs(g, config, sizes()), options),
    };
  };
  const run = (
    weights: WeightSource,
    feedOverride: Record<string, Float32Array> = {},
    options?: FluxTransformerOptions,
  ) => {
    const { g, sample, lora } = build(weights, options);
    const [out] = evaluate(g, feeds(feedOverride), [sample]);
    return { out: out!, lora, g };
  };

  it(`matches diffusers in the float64 interpreter (relative L2 < ${FP32_PARITY})`, async () => {
    expectParity("fp32 weights, interpreter", run(await openSafetensorsWeights(fixture.weightsPath)).out);
  });

  it(`matches diffusers through onnxruntime in fp32 (relative L2 < ${FP32_PARITY})`, async () => {
    const { g, sample } = build(await openSafetensorsWeights(fixture.weightsPath));
    const session = await compile(g, { outputs: { sample } });
    try {
      expectParity("fp32 weights, onnxruntime", (await session.run(feeds())).sample as Float32Array);
    } finally {
      await session.dispose();
    }
  });

  it("computes in float16 through onnxruntime when asked", async () => {
    const { g, sample } = build(await openSafetensorsWeights(fixture.weightsPath), { dtype: "float16" });
    expect(sample.dtype).toBe("float16");
    const session = await compile(g, { outputs: { sample: ops.cast(sample, "float32") } });
    try {
      const out = (await session.run(feeds())).sample as Float32Array;
      const err = relativeL2(out, reference());
      console.log(`${fixture.name}: fp16 compute, onnxruntime relative L2 = ${err.toExponential(2)}`);
      // fp16 keeps 11 significant bits (2^-11 ≈ 5e-4 per rounding); measured 5.9e-4 on the Kontext fixture.
      expect(err).toBeLessThan(5e-3);
    } finally {
      await session.dispose();
    }
  });

  it("marks every block as a recompute region when asked, without changing the output", () => {
    const plain = build(inMemory(fp32));
    const ckpt = build(inMemory(fp32), { recompute: true });
    const regions = new Set(ckpt.g.nodes.map((n) => n.recompute).filter((r) => r !== undefined));
    expect(regions.size).toBe(config.numLayers + config.numSingleLayers);
    expect(plain.g.nodes.every((n) => n.recompute === undefined)).toBe(true);
    const [a] = evaluate(plain.g, feeds(), [plain.sample]);
    const [b] = evaluate(ckpt.g, feeds(), [ckpt.sample]);
    expect(maxAbsDiff(a!, b!)).toBe(0);
  });

  it("computes attention one head at a time when asked, without changing the output", () => {
    const plain = build(inMemory(fp32));
    const chunked = build(inMemory(fp32), { attentionHeadChunk: 1 });
    const softmaxes = (b: typeof plain) => b.g.nodes.filter((n) => n.op === "Softmax").length;
    const blocks = config.numLayers + config.numSingleLayers;
    expect(config.numAttentionHeads).toBeGreaterThan(1);
    expect(softmaxes(plain)).toBe(blocks);
    expect(softmaxes(chunked)).toBe(blocks * config.numAttentionHeads);
    const [a] = evaluate(plain.g, feeds(), [plain.sample]);
    const [b] = evaluate(chunked.g, feeds(), [chunked.sample]);
    expect(maxAbsDiff(a!, b!)).toBeLessThanOrEqual(1e-12);
  });

  it("has teeth: swapped norm_out halves, a dropped context-image offset or swapped rotary axes fail", () => {
    const swapHalves = inMemory(fp32, (name, d) => {
      if (!name.startsWith("norm_out.linear.")) return d;
      const rows = d.length / 2;
      return Float32Array.from([...d.subarray(rows), ...d.subarray(0, rows)]);
    });
    const errors: Record<string, number> = { swappedNormOut: relativeL2(run(swapHalves).out, reference()) };
    const ids = io.get("in.img_ids")!.data;
    // Only a Kontext fixture has context-image tokens (first coordinate 1); plain FLUX.1 has none to drop.
    const noOffset = ids.map((v, i) => (i % 3 === 0 ? 0 : v));
    const hasContext = noOffset.some((v, i) => v !== ids[i]);
    if (fixture.meta.ctx_grid !== undefined) expect(hasContext, "ctx_grid but no img_ids offset").toBe(true);
    if (hasContext) {
      errors.noContextOffset = relativeL2(run(inMemory(fp32), { img_ids: noOffset }).out, reference());
    }
    const swappedAxes = ids.map((v, i) => (i % 3 === 1 ? ids[i + 1]! : i % 3 === 2 ? ids[i - 1]! : v));
    // Swapping rows and columns changes positions unless every token sits on the diagonal.
    expect(swappedAxes.some((v, i) => v !== ids[i])).toBe(true);
    errors.swappedRowCol = relativeL2(run(inMemory(fp32), { img_ids: swappedAxes }).out, reference());
    console.log(`${fixture.name}: relative L2 of deliberate mistakes`, errors);
    for (const e of Object.values(errors)) expect(e).toBeGreaterThan(1e-2);
  });

  it("loads bf16 weights (cast in the graph) within bf16 rounding of the fp32 reference", async () => {
    const bf16Path = join(tmp, "weights-bf16.safetensors");
    const tensors = new Map(
      [...fp32].map(([n, t]) => [
        n,
        { dtype: "bfloat16" as const, shape: t.shape, data: float32ToBfloat16(t.data) },
      ]),
    );
    await writeSafetensors(bf16Path, tensors);
    const { out, g } = run(await openSafetensorsWeights(bf16Path));
    expect(g.initializers.every((t) => t.dtype === "bfloat16")).toBe(true);
    // The cast itself must be exact: fp32 weights pre-rounded to bf16 give the same output.
    const rounded = inMemory(fp32, (_n, d) => {
      const bits = float32ToBfloat16(d);
      return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
    });
    expect(relativeL2(out, run(rounded).out)).toBeLessThan(1e-12);
    const err = relativeL2(out, reference());
    console.log(`${fixture.name}: bf16 weights, relative L2 vs fp32 reference = ${err.toExponential(2)}`);
    // bf16 keeps 8 mantissa bits (relative rounding up to 2^-9 ≈ 2e-3 per weight); measured 2.7e-3 on the
    // Kontext fixture, so 1e-2 leaves room without hiding a wrong cast (which would be off by far more).
    expect(err).toBeLessThan(1e-2);
  });

  it("adds LoRA as graph inputs named by PEFT keys, equal to merged weights", () => {
    const rank = 2;
    const alpha = 4;
    const probe = build(inMemory(fp32), { lora: { rank, alpha } });
    const perDouble = 8;
    const perSingle = 3;
    expect(probe.lora.length).toBe(2 * (config.numLayers * perDouble + config.numSingleLayers * perSingle));
    const keys = probe.lora.map((p) => p.key);
    expect(keys).toContain("transformer_blocks.0.attn.to_q.lora_A.weight");
    expect(keys).toContain("transformer_blocks.0.attn.to_add_out.lora_B.weight");
    expect(keys).toContain(`single_transformer_blocks.${config.numSingleLayers - 1}.attn.to_v.lora_B.weight`);
    expect(keys.some((k) => k.includes("proj_mlp") || k.includes("ff."))).toBe(false);

    // Random factors: the LoRA graph must equal a plain graph whose weights are W + (alpha/rank)·B·A.
    const loraFeeds: Record<string, Float32Array> = {};
    const merged = new Map<string, WeightEntry>(
      [...fp32].map(([n, t]) => [n, { dtype: "float32", shape: t.shape, data: Float32Array.from(t.data) }]),
    );
    probe.lora.forEach((p, i) => {
      loraFeeds[p.input.source.kind === "input" ? p.input.source.name : p.key] = noise(
        p.input.size,
        100 + i,
        0.3,
      );
    });
    for (const p of probe.lora) {
      if (!p.key.endsWith("lora_A.weight")) continue;
      const module = p.key.slice(0, -".lora_A.weight".length);
      const a = loraFeeds[`${module}.lora_A.weight`]!;
      const b = loraFeeds[`${module}.lora_B.weight`]!;
      const w = merged.get(`${module}.weight`)!;
      const [out, inF] = w.shape as [number, number];
      const wd = w.data as Float32Array;
      const m = new Float64Array(out * inF);
      for (let o = 0; o < out; o++)
        for (let i = 0; i < inF; i++) {
          let s = 0;
          for (let r = 0; r < rank; r++) s += b[o * rank + r]! * a[r * inF + i]!;
          m[o * inF + i] = wd[o * inF + i]! + (alpha / rank) * s;
        }
      merged.set(`${module}.weight`, { dtype: "float64", shape: w.shape, data: m });
    }
    const withLora = run(inMemory(fp32), loraFeeds, { lora: { rank, alpha } }).out;
    const plain = run(memoryWeightSource(merged)).out;
    expect(relativeL2(withLora, plain)).toBeLessThan(1e-10);
    expect(relativeL2(withLora, reference())).toBeGreaterThan(1e-3);
  });

  it("shares weights between v_θ, v_old and v_ref built into one graph", async () => {
    const g = new Graph("nft");
    const weights = inMemory(fp32);
    const inputs = fluxTransformerInputs(g, config, sizes());
    const theta = buildFluxTransformer(g, config, weights, inputs, {
      lora: { rank: 2, inputPrefix: "theta/" },
      scope: "v_theta",
    });
    const old = buildFluxTransformer(g, config, weights, inputs, {
      lora: { rank: 2, inputPrefix: "old/" },
      scope: "v_old",
    });
    const ref = buildFluxTransformer(g, config, weights, inputs, { scope: "v_ref" });
    expect(g.initializers.length).toBe(fp32.size);
    expect(theta.lora.length).toBe(old.lora.length);
    const zeroB = Object.fromEntries(
      [...theta.lora, ...old.lora].map((p) => [
        p.input.source.kind === "input" ? p.input.source.name : "",
        p.key.includes("lora_B") ? new Float32Array(p.input.size) : noise(p.input.size, 7),
      ]),
    );
    const outs = evaluate(g, feeds(zeroB), [theta.sample, old.sample, ref.sample]);
    // B = 0 (PEFT's initialisation) makes every adapter an exact no-op.
    expect(maxAbsDiff(outs[0]!, outs[2]!)).toBe(0);
    expect(maxAbsDiff(outs[1]!, outs[2]!)).toBe(0);
    expectParity("shared-weights graph, interpreter", outs[2]!);
    // The fused graph also runs through onnxruntime, with one copy of each weight.
    const session = await compile(g, { outputs: { theta: theta.sample, old: old.sample, ref: ref.sample } });
    try {
      const ort = await session.run(feeds(zeroB));
      const ortVsInterpreter = relativeL2(ort.theta as Float32Array, outs[0]!);
      console.log(`${fixture.name}: shared-weights graph, onnxruntime vs interpreter = ${ortVsInterpreter}`);
      expect(ortVsInterpreter).toBeLessThan(FP32_PARITY);
      expectParity("shared-weights graph, onnxruntime", ort.ref as Float32Array);
    } finally {
      await session.dispose();
    }
  });

  it("reads LoRA factors from options.tensors when the caller owns them", () => {
    // The factors the builder would create itself, with noise values, as the reference.
    const own = build(inMemory(fp32), { lora: { rank: 2 } });
    const values = Object.fromEntries(own.lora.map((p, i) => [p.key, noise(p.input.size, 100 + i)]));
    const ownFeeds = feeds(
      Object.fromEntries(
        own.lora.map((p) => [p.input.source.kind === "input" ? p.input.source.name : p.key, values[p.key]!]),
      ),
    );
    const expected = evaluate(own.g, ownFeeds, [own.sample])[0]!;

    const g = new Graph("given");
    // Inputs under unrelated names, computed through an op, so only options.tensors can route them.
    const tensors: Record<string, ReturnType<typeof g.input>> = {};
    const givenFeeds: Record<string, Float32Array> = {};
    own.lora.forEach((p, i) => {
      tensors[p.key] = ops.mul(g.input(`param${i}`, "float32", p.input.shape), 1);
      givenFeeds[`param${i}`] = values[p.key]!;
    });
    const given = buildFluxTransformer(g, config, inMemory(fp32), fluxTransformerInputs(g, config, sizes()), {
      lora: { rank: 2, tensors },
    });
    expect(given.lora.map((p) => p.key)).toEqual(own.lora.map((p) => p.key));
    expect(given.lora.every((p) => p.input === tensors[p.key])).toBe(true);
    const out = evaluate(g, feeds(givenFeeds), [given.sample])[0]!;
    expect(maxAbsDiff(out, expected)).toBe(0);

    const g2 = new Graph("missing");
    const { [own.lora[0]!.key]: _dropped, ...partial } = tensors;
    expect(() =>
      buildFluxTransformer(g2, config, inMemory(fp32), fluxTransformerInputs(g2, config, sizes()), {
        lora: { rank: 2, tensors: partial },
      }),
    ).toThrow(/missing from options\.tensors/);
  });

  it("names the key and both shapes on a checkpoint that does not fit the config", () => {
    // Twice the heads: an inner width no weight of this checkpoint has, whatever its config.
    const wrong = { ...fixture.meta.config, num_attention_heads: 2 * config.numAttentionHeads };
    const bad = parseFluxTransformerConfig(wrong);
    const g = new Graph();
    expect(() =>
      buildFluxTransformer(g, bad, inMemory(fp32), fluxTransformerInputs(g, bad, sizes())),
    ).toThrow(WeightError);
    const g2 = new Graph();
    expect(() =>
      buildFluxTransformer(g2, bad, inMemory(fp32), fluxTransformerInputs(g2, bad, sizes())),
    ).toThrow(/"x_embedder\.weight" has shape \[\d+, \d+\] but the model config needs \[\d+, \d+\]/);
    const missing = memoryWeightSource(
      new Map(
        [...inMemory(fp32).names()]
          .filter((n) => n !== "proj_out.bias")
          .map((n) => [n, inMemory(fp32).get(n)!]),
      ),
    );
    const g3 = new Graph();
    expect(() =>
      buildFluxTransformer(g3, config, missing, fluxTransformerInputs(g3, config, sizes())),
    ).toThrow(/weight "proj_out\.bias" .* is missing/);
    const g4 = new Graph();
    const inputs = fluxTransformerInputs(g4, config, sizes());
    expect(() =>
      buildFluxTransformer(g4, config, inMemory(fp32), {
        ...inputs,
        imgIds: g4.input("ids", "float32", [sizes().imageTokens + 1, 3]),
      }),
    ).toThrow(GraphError);
  });
});
