import { closeDefaultRuntime, compile, evaluate, Graph, GraphError } from "@edit-r1/engine";
import {
  fixturesOfKind,
  maxAbsDiff,
  noise,
  readAllFloat32,
  readFixtureIo,
  relativeL2,
} from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelConfigError } from "./model-config-error.js";
import { parseQwenImageTransformerConfig } from "./qwen-image-config.js";
import {
  buildQwenImageTransformer,
  type QwenImageShape,
  type QwenImageTransformerOptions,
  qwenImageRopeIds,
  qwenImageTransformerInputs,
} from "./qwen-image-transformer.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { memoryWeightSource, type WeightEntry, WeightError, type WeightSource } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Relative L2 to the fp32 diffusers reference that fp32 rounding explains: the reference itself carries
 * it (unit roundoff 2^-24 ≈ 6e-8 per operation). Measured on qwenimage-edit-transformer: float64 interpreter
 * 3.1e-7, onnxruntime fp32 3.0e-7; on held-out fixtures (batch 2, other grids, text masks and configs):
 * at most 3.6e-7 and 1.9e-7. A wrong rotary position or modulation half costs > 1e-2.
 */
const FP32_PARITY = 2e-6;

const fixtures = fixturesOfKind("qwenimage-transformer");

afterAll(async () => {
  await closeDefaultRuntime();
});

it("finds at least one qwenimage-transformer fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

it("places MSRoPE positions like diffusers' QwenEmbedRope (centred rows/columns, image index, diagonal text)", () => {
  const { img, txt } = qwenImageRopeIds(
    [
      [1, 2, 3],
      [1, 5, 2],
    ],
    2,
  );
  const rows = (a: Float32Array) =>
    Array.from({ length: a.length / 3 }, (_, i) => [...a.subarray(3 * i, 3 * i + 3)]);
  expect(rows(img)).toEqual([
    [0, -1, -2],
    [0, -1, -1],
    [0, -1, 0],
    [0, 0, -2],
    [0, 0, -1],
    [0, 0, 0],
    [1, -3, -1],
    [1, -3, 0],
    [1, -2, -1],
    [1, -2, 0],
    [1, -1, -1],
    [1, -1, 0],
    [1, 0, -1],
    [1, 0, 0],
    [1, 1, -1],
    [1, 1, 0],
  ]);
  // m = max(⌊2/2⌋, ⌊3/2⌋, ⌊5/2⌋, ⌊2/2⌋) = 2.
  expect(rows(txt)).toEqual([
    [2, 2, 2],
    [3, 3, 3],
  ]);
});

it("parses the diffusers config, Edit-2511's zero_cond_t included, and refuses the other variants' flags", () => {
  const c = parseQwenImageTransformerConfig({});
  expect(c).toMatchObject({ inChannels: 64, outChannels: 16, numLayers: 60, jointAttentionDim: 3584 });
  expect(c.zeroCondT).toBe(false);
  expect(parseQwenImageTransformerConfig({ zero_cond_t: true }).zeroCondT).toBe(true);
  expect(() => parseQwenImageTransformerConfig({ use_layer3d_rope: true }, "t/config.json")).toThrow(
    /t\/config\.json: "use_layer3d_rope" is true/,
  );
  expect(() => parseQwenImageTransformerConfig({ axes_dims_rope: [16, 56, 50] })).toThrow(ModelConfigError);
});

describe.each(fixtures.map((f) => [f.name, f] as const))(
  "Qwen-Image transformer vs fixture %s",
  (_, fixture) => {
    const config = parseQwenImageTransformerConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
    const imgShapes = fixture.meta.img_shapes as QwenImageShape[];
    let io: Tensors;
    let fp32: Tensors;
    beforeAll(async () => {
      io = await readFixtureIo(fixture);
      fp32 = await readAllFloat32(fixture.weightsPath);
    });

    const feeds = (override: Record<string, Float32Array> = {}) => {
      const f: Record<string, Float32Array> = {};
      for (const [name, t] of io) if (name.startsWith("in.")) f[name.slice(3)] = t.data;
      return { ...f, ...override };
    };
    const textTokens = () => io.get("in.encoder_hidden_states")!.shape[1]!;
    const batch = () => io.get("in.hidden_states")!.shape[0]!;
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
        new Map(
          [...tensors].map(([n, t]) => [n, { dtype: "float32", shape: t.shape, data: edit(n, t.data) }]),
        ),
      );
    const build = (
      weights: WeightSource,
      options?: QwenImageTransformerOptions,
      sizes: { shapes?: QwenImageShape[]; textTokens?: number } = {},
    ) => {
      const g = new Graph("qwen");
      const inputs = qwenImageTransformerInputs(g, config, {
        batch: batch(),
        imgShapes: sizes.shapes ?? imgShapes,
        textTokens: sizes.textTokens ?? textTokens(),
        mask: true,
      });
      return { g, ...buildQwenImageTransformer(g, config, weights, inputs, options) };
    };
    const run = (
      weights: WeightSource,
      feedOverride: Record<string, Float32Array> = {},
      options?: QwenImageTransformerOptions,
      sizes?: { shapes?: QwenImageShape[]; textTokens?: number },
    ) => {
      const { g, sample, lora } = build(weights, options, sizes);
      const [out] = evaluate(g, feeds(feedOverride), [sample]);
      return { out: out!, lora, g };
    };

    it(`matches diffusers in the float64 interpreter (relative L2 < ${FP32_PARITY})`, async () => {
      expectParity("interpreter", run(await openSafetensorsWeights(fixture.weightsPath)).out);
    });

    it(`matches diffusers through onnxruntime in fp32 (relative L2 < ${FP32_PARITY})`, async () => {
      const { g, sample } = build(await openSafetensorsWeights(fixture.weightsPath));
      const session = await compile(g, { outputs: { sample } });
      try {
        expectParity("onnxruntime fp32", (await session.run(feeds())).sample as Float32Array);
      } finally {
        await session.dispose();
      }
    });

    it("has teeth: swapped norm_out halves, a flattened or transposed grid fail; (F=n, h, w) for n equal images matches", () => {
      const swapHalves = inMemory(fp32, (name, d) => {
        if (!name.startsWith("norm_out.linear.")) return d;
        const rows = d.length / 2;
        return Float32Array.from([...d.subarray(rows), ...d.subarray(0, rows)]);
      });
      const errors: Record<string, number> = { swappedNormOut: relativeL2(run(swapHalves).out, reference()) };
      // Wrong rotary positions that keep the token count: a flattened grid (h·w × 1) and a transposed one.
      const merged: QwenImageShape[] = [
        [imgShapes.length, ...imgShapes[0]!.slice(1)] as unknown as QwenImageShape,
      ];
      const sameSize = imgShapes.every((s) => s[1] === imgShapes[0]![1] && s[2] === imgShapes[0]![2]);
      if (sameSize && imgShapes.every((s) => s[0] === 1)) {
        // (F=n, h, w) gives frame indices 0…n−1 to consecutive frames of image 0: the same positions as n
        // images of one size, so it must match.
        expectParity("(F=n, h, w)", run(inMemory(fp32), {}, undefined, { shapes: merged }).out);
      }
      const flattened = imgShapes.map(([f, h, w]) => [f, h * w, 1] as const);
      if (imgShapes.some(([, , w]) => w !== 1)) {
        errors.flattenedGrid = relativeL2(
          run(inMemory(fp32), {}, undefined, { shapes: flattened }).out,
          reference(),
        );
      }
      const transposed = imgShapes.map(([f, h, w]) => [f, w, h] as const);
      if (transposed.some(([, h, w]) => h !== w)) {
        errors.transposed = relativeL2(
          run(inMemory(fp32), {}, undefined, { shapes: transposed }).out,
          reference(),
        );
      }
      console.log(`${fixture.name}: relative L2 of deliberate mistakes`, errors);
      for (const e of Object.values(errors)) expect(e).toBeGreaterThan(1e-2);
    });

    it("zero_cond_t (Edit-2511): equals the plain model at t = 0 and on target-only input, differs on sources at t > 0", () => {
      // No fixture exists for Edit-2511; these check the plumbing: the condition tokens' modulation comes from
      // temb(0), so where every token would get temb(t) anyway the outputs must be equal, and not elsewhere.
      const zero = { ...config, zeroCondT: true };
      const weights = inMemory(fp32);
      const runWith = (cfg: typeof config, shapes: QwenImageShape[], timestep?: Float32Array) => {
        const g = new Graph("qwen_zero_cond");
        const inputs = qwenImageTransformerInputs(g, cfg, {
          batch: batch(),
          imgShapes: shapes,
          textTokens: textTokens(),
          mask: true,
        });
        const { sample } = buildQwenImageTransformer(g, cfg, weights, inputs);
        const tokens = shapes.reduce((n, [f, h, w]) => n + f * h * w, 0);
        const hs = io.get("in.hidden_states")!;
        const width = hs.shape[2]!;
        const rows = hs.shape[1]!;
        // The fixture's tokens, cut to `tokens` per sample.
        const cut = new Float32Array(batch() * tokens * width);
        for (let b = 0; b < batch(); b++)
          cut.set(hs.data.subarray(b * rows * width, (b * rows + tokens) * width), b * tokens * width);
        const [out] = evaluate(g, feeds({ hidden_states: cut, ...(timestep ? { timestep } : {}) }), [sample]);
        return out!;
      };
      const targetOnly = [imgShapes[0]!];
      expect(maxAbsDiff(runWith(zero, targetOnly), runWith(config, targetOnly))).toBe(0);
      const t0 = new Float32Array(batch());
      expect(relativeL2(runWith(zero, imgShapes, t0), runWith(config, imgShapes, t0))).toBeLessThan(1e-12);
      if (imgShapes.length > 1) {
        const moved = relativeL2(runWith(zero, imgShapes), runWith(config, imgShapes));
        console.log(
          `${fixture.name}: zero_cond_t vs plain with sources at t > 0: relative L2 ${moved.toExponential(2)}`,
        );
        expect(moved).toBeGreaterThan(1e-3);
      }
    });

    it("masks padded text keys: padding appended behind a mask changes nothing, unmasked it does", () => {
      // The fixture's own text (whatever its batch, length and mask) followed by as many padded tokens of
      // garbage: masked, the image output must equal the fixture's run; unmasked, the garbage leaks in.
      const ehs = io.get("in.encoder_hidden_states")!;
      const [B, L, width] = ehs.shape as [number, number, number];
      const mask = io.get("in.encoder_hidden_states_mask")?.data ?? new Float32Array(B * L).fill(1);
      const pad = L;
      const padded = new Float32Array(B * (L + pad) * width);
      const paddedMask = new Float32Array(B * (L + pad));
      const leakyMask = new Float32Array(B * (L + pad)).fill(1);
      const garbage = noise(B * pad * width, 11, 5);
      for (let b = 0; b < B; b++) {
        padded.set(ehs.data.subarray(b * L * width, (b + 1) * L * width), b * (L + pad) * width);
        padded.set(garbage.subarray(b * pad * width, (b + 1) * pad * width), (b * (L + pad) + L) * width);
        paddedMask.set(mask.subarray(b * L, (b + 1) * L), b * (L + pad));
        leakyMask.set(mask.subarray(b * L, (b + 1) * L), b * (L + pad));
      }
      const sizes = { textTokens: L + pad };
      const plain = run(inMemory(fp32)).out;
      const masked = run(
        inMemory(fp32),
        { encoder_hidden_states: padded, encoder_hidden_states_mask: paddedMask },
        undefined,
        sizes,
      ).out;
      const unmasked = run(
        inMemory(fp32),
        { encoder_hidden_states: padded, encoder_hidden_states_mask: leakyMask },
        undefined,
        sizes,
      ).out;
      const errors = { masked: relativeL2(masked, plain), unmasked: relativeL2(unmasked, plain) };
      console.log(`${fixture.name}: ${B}×${pad} padded text tokens, relative L2 to the unpadded run`, errors);
      // Both runs are float64; masked keys get exactly zero weight, so only summation order differs.
      expect(errors.masked).toBeLessThan(1e-10);
      // Measured 2.7e-2 (batch 1, 8 text tokens and 8 padded): the garbage keys draw attention.
      expect(errors.unmasked).toBeGreaterThan(5e-3);
    });

    it("marks every block as a recompute region when asked, without changing the output", () => {
      const plain = build(inMemory(fp32));
      const ckpt = build(inMemory(fp32), { recompute: true });
      const regions = new Set(ckpt.g.nodes.map((n) => n.recompute).filter((r) => r !== undefined));
      expect(regions.size).toBe(config.numLayers);
      expect(plain.g.nodes.every((n) => n.recompute === undefined)).toBe(true);
      const [a] = evaluate(plain.g, feeds(), [plain.sample]);
      const [b] = evaluate(ckpt.g, feeds(), [ckpt.sample]);
      expect(maxAbsDiff(a!, b!)).toBe(0);
    });

    it("computes attention one head at a time when asked, without changing the output", () => {
      const plain = build(inMemory(fp32));
      const chunked = build(inMemory(fp32), { attentionHeadChunk: 1 });
      const softmaxes = (b: typeof plain) => b.g.nodes.filter((n) => n.op === "Softmax").length;
      expect(config.numAttentionHeads).toBeGreaterThan(1);
      expect(softmaxes(chunked)).toBe(softmaxes(plain) * config.numAttentionHeads);
      const [a] = evaluate(plain.g, feeds(), [plain.sample]);
      const [b] = evaluate(chunked.g, feeds(), [chunked.sample]);
      expect(maxAbsDiff(a!, b!)).toBeLessThanOrEqual(1e-12);
    });

    it("adds LoRA on the Edit-R1 targets as PEFT-named inputs, equal to merged weights", () => {
      const rank = 2;
      const alpha = 4;
      const probe = build(inMemory(fp32), { lora: { rank, alpha, inputPrefix: "theta/" } });
      expect(probe.lora.length).toBe(2 * 8 * config.numLayers);
      const keys = probe.lora.map((p) => p.key);
      for (const m of [
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
      ]) {
        expect(keys).toContain(`transformer_blocks.${config.numLayers - 1}.attn.${m}.lora_A.weight`);
      }
      expect(keys.some((k) => k.includes("mlp") || k.includes("_mod"))).toBe(false);
      expect(probe.lora[0]!.input.source).toMatchObject({ name: `theta/${probe.lora[0]!.key}` });

      const loraFeeds: Record<string, Float32Array> = {};
      const values: Record<string, Float32Array> = {};
      probe.lora.forEach((p, i) => {
        values[p.key] = noise(p.input.size, 100 + i, 0.3);
        loraFeeds[`theta/${p.key}`] = values[p.key]!;
      });
      const merged = new Map<string, WeightEntry>(
        [...fp32].map(([n, t]) => [n, { dtype: "float32", shape: t.shape, data: Float32Array.from(t.data) }]),
      );
      for (const p of probe.lora) {
        if (!p.key.endsWith("lora_A.weight")) continue;
        const module = p.key.slice(0, -".lora_A.weight".length);
        const a = values[`${module}.lora_A.weight`]!;
        const b = values[`${module}.lora_B.weight`]!;
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
      const withLora = run(inMemory(fp32), loraFeeds, { lora: { rank, alpha, inputPrefix: "theta/" } }).out;
      const plain = run(memoryWeightSource(merged)).out;
      expect(relativeL2(withLora, plain)).toBeLessThan(1e-10);
      expect(relativeL2(withLora, reference())).toBeGreaterThan(1e-3);
    });

    it("shares weights between passes built into one graph", () => {
      const g = new Graph("nft");
      const weights = inMemory(fp32);
      const inputs = qwenImageTransformerInputs(g, config, {
        batch: batch(),
        imgShapes,
        textTokens: textTokens(),
        mask: true,
      });
      const theta = buildQwenImageTransformer(g, config, weights, inputs, {
        lora: { rank: 2, inputPrefix: "theta/" },
        scope: "v_theta",
      });
      const ref = buildQwenImageTransformer(g, config, weights, inputs, { scope: "v_ref" });
      expect(g.initializers.length).toBe(fp32.size);
      const zeroB = Object.fromEntries(
        theta.lora.map((p) => [
          `theta/${p.key}`,
          p.key.includes("lora_B") ? new Float32Array(p.input.size) : noise(p.input.size, 7),
        ]),
      );
      const outs = evaluate(g, feeds(zeroB), [theta.sample, ref.sample]);
      expect(maxAbsDiff(outs[0]!, outs[1]!)).toBe(0);
      expectParity("shared-weights graph", outs[1]!);
    });

    it("names the key and both shapes on a checkpoint or inputs that do not fit", () => {
      // A text width the checkpoint cannot have, whatever the fixture's config.
      const wrongWidth = 2 * config.jointAttentionDim + 8;
      const bad = parseQwenImageTransformerConfig({
        ...fixture.meta.config,
        joint_attention_dim: wrongWidth,
      });
      const sizes = { batch: batch(), imgShapes, textTokens: textTokens() };
      const g = new Graph();
      const inputs = qwenImageTransformerInputs(g, bad, sizes);
      expect(() => buildQwenImageTransformer(g, bad, inMemory(fp32), inputs)).toThrow(WeightError);
      const g2 = new Graph();
      expect(() =>
        buildQwenImageTransformer(g2, bad, inMemory(fp32), qwenImageTransformerInputs(g2, bad, sizes)),
      ).toThrow(
        new RegExp(
          `"txt_norm\\.weight" has shape \\[${config.jointAttentionDim}\\] but the model config needs \\[${wrongWidth}\\]`,
        ),
      );
      const g3 = new Graph();
      const ok = qwenImageTransformerInputs(g3, config, { ...sizes, mask: true });
      // One image that covers one token more than hidden_states holds.
      const tokens = imgShapes.reduce((n, [f, h, w]) => n + f * h * w, 0);
      expect(() =>
        buildQwenImageTransformer(g3, config, inMemory(fp32), { ...ok, imgShapes: [[1, 1, tokens + 1]] }),
      ).toThrow(new RegExp(`img_shapes .* cover ${tokens + 1} tokens but hidden_states .* has ${tokens}`));
      expect(() =>
        buildQwenImageTransformer(g3, config, inMemory(fp32), {
          ...ok,
          encoderHiddenStatesMask: g3.input("m", "float32", [batch(), textTokens() + 1]),
        }),
      ).toThrow(GraphError);
    });
  },
);
