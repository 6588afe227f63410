import { closeDefaultRuntime, compile, evaluate, Graph, GraphError } from "@edit-r1/engine";
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
import {
  fixturesOfKind,
  maxAbsDiff,
  noise,
  readAllFloat32,
  readFixtureIo,
  relativeL2,
} from "./test-fixtures.js";
import { memoryWeightSource, type WeightEntry, WeightError, type WeightSource } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

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

it("parses the diffusers config and refuses the Edit-2511 flags", () => {
  const c = parseQwenImageTransformerConfig({});
  expect(c).toMatchObject({ inChannels: 64, outChannels: 16, numLayers: 60, jointAttentionDim: 3584 });
  expect(() => parseQwenImageTransformerConfig({ zero_cond_t: true }, "t/config.json")).toThrow(
    /t\/config\.json: "zero_cond_t" is true/,
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

    it("matches diffusers in the float64 interpreter (relative L2 < 1e-4)", async () => {
      const { out } = run(await openSafetensorsWeights(fixture.weightsPath));
      const err = relativeL2(out, reference());
      console.log(`${fixture.name}: interpreter relative L2 = ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-4);
    });

    it("matches diffusers through onnxruntime in fp32 (relative L2 < 1e-4)", async () => {
      const { g, sample } = build(await openSafetensorsWeights(fixture.weightsPath));
      const session = await compile(g, { outputs: { sample } });
      try {
        const out = (await session.run(feeds())).sample as Float32Array;
        const err = relativeL2(out, reference());
        console.log(`${fixture.name}: onnxruntime fp32 relative L2 = ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-4);
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
        expect(
          relativeL2(run(inMemory(fp32), {}, undefined, { shapes: merged }).out, reference()),
        ).toBeLessThan(1e-4);
      }
      const flattened = imgShapes.map(([f, h, w]) => [f, h * w, 1] as const);
      errors.flattenedGrid = relativeL2(
        run(inMemory(fp32), {}, undefined, { shapes: flattened }).out,
        reference(),
      );
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

    it("masks padded text keys: the image output equals the run without the padded tokens", () => {
      const L = textTokens();
      // Half the text is padding, so dropping the mask lets many garbage keys in.
      const keep = Math.ceil(L / 2);
      const ehs = io.get("in.encoder_hidden_states")!;
      const width = ehs.shape[2]!;
      const masked = Float32Array.from({ length: L }, (_, j) => (j < keep ? 1 : 0));
      // Padding carries garbage: the mask must hide it completely.
      const garbage = Float32Array.from(ehs.data, (v, i) =>
        Math.floor(i / width) % L < keep ? v : 5 * noise(1, i)[0]!,
      );
      const withMask = run(inMemory(fp32), {
        encoder_hidden_states: garbage,
        encoder_hidden_states_mask: masked,
      }).out;
      const truncated = run(
        inMemory(fp32),
        {
          encoder_hidden_states: ehs.data.slice(0, keep * width),
          encoder_hidden_states_mask: new Float32Array(keep).fill(1),
        },
        undefined,
        { textTokens: keep },
      ).out;
      expect(relativeL2(withMask, truncated)).toBeLessThan(1e-10);
      const unmasked = run(inMemory(fp32), { encoder_hidden_states: garbage }).out;
      const dropped = relativeL2(unmasked, truncated);
      console.log(
        `${fixture.name}: dropping the mask over ${L - keep} padded tokens moves the output by ${dropped.toExponential(2)}`,
      );
      // fp32 rounding is ~3e-7 and the masked run equals the truncated one to 1e-10; measured 1.2e-2.
      expect(dropped).toBeGreaterThan(5e-3);
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
      expect(relativeL2(outs[1]!, reference())).toBeLessThan(1e-4);
    });

    it("names the key and both shapes on a checkpoint or inputs that do not fit", () => {
      const bad = parseQwenImageTransformerConfig({ ...fixture.meta.config, joint_attention_dim: 24 });
      const g = new Graph();
      const inputs = qwenImageTransformerInputs(g, bad, { batch: 1, imgShapes, textTokens: 4 });
      expect(() => buildQwenImageTransformer(g, bad, inMemory(fp32), inputs)).toThrow(WeightError);
      const g2 = new Graph();
      expect(() =>
        buildQwenImageTransformer(
          g2,
          bad,
          inMemory(fp32),
          qwenImageTransformerInputs(g2, bad, { batch: 1, imgShapes, textTokens: 4 }),
        ),
      ).toThrow(/"txt_norm\.weight" has shape \[\d+\] but the model config needs \[24\]/);
      const g3 = new Graph();
      const ok = qwenImageTransformerInputs(g3, config, { batch: 1, imgShapes, textTokens: 4 });
      expect(() =>
        buildQwenImageTransformer(g3, config, inMemory(fp32), { ...ok, imgShapes: [[1, 3, 3]] }),
      ).toThrow(/img_shapes .* cover 9 tokens but hidden_states/);
      expect(() =>
        buildQwenImageTransformer(g3, config, inMemory(fp32), {
          ...ok,
          encoderHiddenStatesMask: g3.input("m", "float32", [1, 5]),
        }),
      ).toThrow(GraphError);
    });
  },
);
