import {
  closeDefaultRuntime,
  compile,
  evaluate,
  float16ToFloat32,
  Graph,
  type Tensor,
} from "@edit-r1/engine";
import { fixturesOfKind, readAllFloat32, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelConfigError } from "./model-config-error.js";
import { parseQwen25VLConfig, type Qwen25VLConfig } from "./qwen2-5-vl-config.js";
import { buildQwen25VLEncoder, type Qwen25VLEncoderOptions } from "./qwen2-5-vl-encoder.js";
import {
  type Qwen25VLImageGrid,
  qwen25VLRopeIndex,
  qwen25VLRopeIndexBatch,
} from "./qwen2-5-vl-rope-index.js";
import { buildQwen25VLVision } from "./qwen2-5-vl-vision.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { memoryWeightSource, WeightError, type WeightSource } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Relative L2 to the fp32 transformers reference allowed in fp32 (and in the float64 interpreter). The
 * reference itself is off its float64 rerun by 9.4e-7 (hidden) / 7.4e-7 (vision), which is what we measure
 * too. Measured on qwen2_5_vl-encoder (2 images of 8×12 and 6×10 patches, 62 tokens): float64 interpreter
 * hidden 9.2e-7, image embeds 7.4e-7; onnxruntime fp32 hidden 1.02e-6 (baked M-RoPE tables) and 9.9e-7
 * (position ids as an input), image embeds 8.4e-7. The known mistakes (meta.json `teeth`) cost ≥ 1.4e-2:
 * all-full vision attention 1.7e-1, swapped h/w position rows 2.0e-2.
 */
const FP32_PARITY = 1e-5;
/**
 * fp16 compute from the fp32 weights: fp16 rounds to 4.9e-4 per operation; measured hidden 1.0e-3, image
 * embeds 6.9e-4.
 */
const FP16_PARITY = 5e-3;

const fixtures = fixturesOfKind("qwen2_5_vl-encoder");

afterAll(async () => {
  await closeDefaultRuntime();
});

it("finds at least one qwen2_5_vl-encoder fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

// Qwen2.5-VL-7B-Instruct's config.json (legacy layout: the text keys at the top level).
const legacy7B = {
  architectures: ["Qwen2_5_VLForConditionalGeneration"],
  hidden_act: "silu",
  hidden_size: 3584,
  image_token_id: 151655,
  intermediate_size: 18944,
  model_type: "qwen2_5_vl",
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_scaling: { type: "mrope", mrope_section: [16, 24, 24] },
  rope_theta: 1000000.0,
  video_token_id: 151656,
  vision_config: {
    depth: 32,
    hidden_act: "silu",
    hidden_size: 1280,
    intermediate_size: 3420,
    num_heads: 16,
    in_chans: 3,
    out_hidden_size: 3584,
    patch_size: 14,
    spatial_merge_size: 2,
    spatial_patch_size: 14,
    window_size: 112,
    fullatt_block_indexes: [7, 15, 23, 31],
    tokens_per_second: 2,
    temporal_patch_size: 2,
  },
  vision_end_token_id: 151653,
  vision_start_token_id: 151652,
  vocab_size: 152064,
};
const TEXT_KEYS = [
  "hidden_act",
  "hidden_size",
  "intermediate_size",
  "num_attention_heads",
  "num_hidden_layers",
  "num_key_value_heads",
  "rms_norm_eps",
  "rope_scaling",
  "rope_theta",
  "vocab_size",
];
/** The newer layout: text keys only under text_config, rope_scaling as {mrope_section, rope_type}. */
function nested(json: Record<string, unknown>): Record<string, unknown> {
  const top: Record<string, unknown> = {};
  const text: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) (TEXT_KEYS.includes(k) ? text : top)[k] = v;
  const section = (json.rope_scaling as { mrope_section: number[] }).mrope_section;
  text.rope_scaling = { mrope_section: section, rope_type: "default", type: "default" };
  return { ...top, text_config: text };
}
const without = (json: Record<string, unknown>, key: string) =>
  Object.fromEntries(Object.entries(json).filter(([k]) => k !== key));

describe("parseQwen25VLConfig", () => {
  it("reads the legacy layout of Qwen2.5-VL-7B-Instruct", () => {
    const c = parseQwen25VLConfig(legacy7B);
    expect(c).toMatchObject({
      hiddenSize: 3584,
      numAttentionHeads: 28,
      numKeyValueHeads: 4,
      headDim: 128,
      mropeSection: [16, 24, 24],
      ropeTheta: 1e6,
      imageTokenId: 151655,
      visionStartTokenId: 151652,
      visionEndTokenId: 151653,
    });
    expect(c.vision).toMatchObject({
      depth: 32,
      hiddenSize: 1280,
      inChannels: 3,
      patchSize: 14,
      spatialMergeSize: 2,
      temporalPatchSize: 2,
      windowSize: 112,
      fullattBlockIndexes: [7, 15, 23, 31],
      outHiddenSize: 3584,
    });
  });

  it("reads tie_word_embeddings (Qwen2.5-VL-3B ties lm_head to the input table), default false", () => {
    expect(parseQwen25VLConfig(legacy7B).tieWordEmbeddings).toBe(false);
    expect(parseQwen25VLConfig({ ...legacy7B, tie_word_embeddings: true }).tieWordEmbeddings).toBe(true);
    const nestedTied = nested({ ...legacy7B, tie_word_embeddings: true });
    expect(parseQwen25VLConfig(nestedTied).tieWordEmbeddings).toBe(true);
    expect(() => parseQwen25VLConfig({ ...legacy7B, tie_word_embeddings: "yes" })).toThrow(
      /tie_word_embeddings/,
    );
  });

  it("reads the nested text_config layout to the same config, text_config winning over the top level", () => {
    expect(parseQwen25VLConfig(nested(legacy7B))).toEqual(parseQwen25VLConfig(legacy7B));
    // Both at once (what transformers ≥ 4.52 writes): text_config is authoritative.
    const both = { ...legacy7B, ...nested(legacy7B), hidden_size: 1 };
    expect(parseQwen25VLConfig(both).hiddenSize).toBe(3584);
    // transformers v5's rope_parameters carries rope_theta and mrope_section.
    const v5 = nested(legacy7B);
    const text = without(v5.text_config as Record<string, unknown>, "rope_scaling");
    v5.text_config = {
      ...without(text, "rope_theta"),
      rope_parameters: { rope_type: "default", rope_theta: 1e6, mrope_section: [16, 24, 24] },
    };
    expect(parseQwen25VLConfig(v5)).toEqual(parseQwen25VLConfig(legacy7B));
    for (const f of fixtures) {
      expect(parseQwen25VLConfig(nested(f.meta.config))).toEqual(parseQwen25VLConfig(f.meta.config));
    }
  });

  it("names a missing key in either layout", () => {
    expect(() => parseQwen25VLConfig(without(legacy7B, "num_key_value_heads"), "te/config.json")).toThrow(
      /te\/config\.json: "num_key_value_heads" is missing/,
    );
    const n = nested(legacy7B);
    n.text_config = without(n.text_config as Record<string, unknown>, "hidden_size");
    expect(() => parseQwen25VLConfig(n)).toThrow(ModelConfigError);
    expect(() => parseQwen25VLConfig(n)).toThrow(
      /"text_config.hidden_size" \(or a top-level "hidden_size"\)/,
    );
    expect(() => parseQwen25VLConfig(without(legacy7B, "image_token_id"))).toThrow(
      /"image_token_id" is missing/,
    );
    expect(() => parseQwen25VLConfig(without(legacy7B, "rope_scaling"))).toThrow(/mrope_section.*missing/);
    const vision = { ...legacy7B, vision_config: without(legacy7B.vision_config, "window_size") };
    expect(() => parseQwen25VLConfig(vision)).toThrow(/"vision_config.window_size" is missing/);
    const badSection = { ...legacy7B, rope_scaling: { type: "mrope", mrope_section: [16, 24, 16] } };
    expect(() => parseQwen25VLConfig(badSection)).toThrow(/must add up to head_dim \/ 2 = 64/);
  });
});

describe("qwen25VLRopeIndex", () => {
  // Tiny ids: vision_start 8, image_pad 9; merge 2.
  const cfg = { imageTokenId: 9, visionStartTokenId: 8, vision: { spatialMergeSize: 2 } };
  const axes = (p: Int32Array, n: number) => [0, 1, 2].map((a) => [...p.subarray(a * n, (a + 1) * n)]);

  it("counts text on all axes, gives an image (s, s+row, s+col) and resumes at s + max(h, w)", () => {
    // text text <start> [2×3 merged cells] <end> text; grid (1, 4, 6) in patches.
    const ids = [1, 2, 8, 9, 9, 9, 9, 9, 9, 7, 3];
    const { positionIds, ropeDelta } = qwen25VLRopeIndex(ids, [[1, 4, 6]], cfg);
    expect(axes(positionIds, ids.length)).toEqual([
      [0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7],
      [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7],
      [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7],
    ]);
    expect(ropeDelta).toBe(8 - ids.length);
  });

  it("puts padding at 1 and counts over the kept tokens; text only counts up", () => {
    const ids = [0, 0, 8, 9, 9, 7];
    const mask = [0, 0, 1, 1, 1, 1];
    // grid (1, 2, 4): one merged row of two cells.
    const { positionIds, ropeDelta } = qwen25VLRopeIndex(ids, [[1, 2, 4]], cfg, mask);
    expect(axes(positionIds, 6)).toEqual([
      [1, 1, 0, 1, 1, 3],
      [1, 1, 0, 1, 1, 3],
      [1, 1, 0, 1, 2, 3],
    ]);
    expect(ropeDelta).toBe(4 - 6);
    const text = qwen25VLRopeIndex([5, 6, 7], [], cfg);
    expect(axes(text.positionIds, 3)).toEqual([
      [0, 1, 2],
      [0, 1, 2],
      [0, 1, 2],
    ]);
    expect(text.ropeDelta).toBe(0);
    expect(() => qwen25VLRopeIndex(ids, [], cfg, mask)).toThrow(/no grid/);
    expect(() => qwen25VLRopeIndex([8, 9, 9, 9, 7], [[1, 2, 4]], cfg)).toThrow(
      /3 <\|image_pad\|> tokens .* need 2/,
    );
    expect(() => qwen25VLRopeIndex([8, 9, 7, 9], [[1, 2, 4]], cfg)).toThrow(/2 consecutive/);
    expect(() => qwen25VLRopeIndexBatch([ids, ids], [[1, 2, 4]], cfg, [mask, mask])).toThrow(
      /more images than the 1 grid/,
    );
  });
});

describe.each(fixtures.map((f) => [f.name, f] as const))("Qwen2.5-VL encoder vs fixture %s", (_, fixture) => {
  const config: Qwen25VLConfig = parseQwen25VLConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
  let io: Tensors;
  let fp32: Tensors;
  let weights: WeightSource;
  beforeAll(async () => {
    io = await readFixtureIo(fixture);
    fp32 = await readAllFloat32(fixture.weightsPath);
    weights = await openSafetensorsWeights(fixture.weightsPath);
  });

  const tensor = (name: string) => {
    const t = io.get(name);
    if (!t) throw new Error(`${fixture.name}: io.safetensors has no ${name}`);
    return t;
  };
  const sizes = () => tensor("in.input_ids").shape as [number, number];
  const rows = (name: string) => {
    const [b, l] = sizes();
    const data =
      name === "in.attention_mask" && !io.has(name) ? new Float32Array(b * l).fill(1) : tensor(name).data;
    return Array.from({ length: b }, (_, i) => [...data.subarray(i * l, (i + 1) * l)]);
  };
  const grids = (): Qwen25VLImageGrid[] => {
    const g = tensor("in.image_grid_thw");
    return Array.from(
      { length: g.shape[0]! },
      (_, i) => [...g.data.subarray(3 * i, 3 * i + 3)] as unknown as Qwen25VLImageGrid,
    );
  };
  const ropeIndex = () =>
    qwen25VLRopeIndexBatch(rows("in.input_ids"), grids(), config, rows("in.attention_mask"));
  const feeds = (ids = rows("in.input_ids"), mask = rows("in.attention_mask")) => ({
    input_ids: BigInt64Array.from(ids.flat(), (v) => BigInt(v)),
    attention_mask: BigInt64Array.from(mask.flat(), (v) => BigInt(v)),
    pixel_values: tensor("in.pixel_values").data,
  });
  /** The reference's values at the kept tokens only (padded positions are garbage in both). */
  const kept = (data: ArrayLike<number>) => {
    const mask = rows("in.attention_mask").flat();
    const width = config.hiddenSize;
    const out: number[] = [];
    mask.forEach((m, i) => {
      if (m === 1) for (let j = 0; j < width; j++) out.push(data[i * width + j]!);
    });
    return out;
  };
  const report = (what: string, err: number) =>
    console.log(`${fixture.name}: ${what} relative L2 = ${err.toExponential(2)} (bound ${FP32_PARITY})`);

  /** Builds the encoder (mask and positions as given) and runs it through onnxruntime in fp32. */
  const runEncoder = async (
    options: {
      source?: WeightSource;
      config?: Qwen25VLConfig;
      ids?: number[][];
      mask?: number[][];
      positions?: Int32Array | "input";
      build?: Qwen25VLEncoderOptions;
    } = {},
  ) => {
    const ids = options.ids ?? rows("in.input_ids");
    const mask = options.mask ?? rows("in.attention_mask");
    const [b, l] = [ids.length, ids[0]!.length];
    const g = new Graph("qwen2_5_vl");
    const px = tensor("in.pixel_values");
    const positions =
      options.positions === "input"
        ? g.input("position_ids", "int64", [3, b, l])
        : (options.positions ?? qwen25VLRopeIndexBatch(ids, grids(), config, mask).positionIds);
    const out = buildQwen25VLEncoder(
      g,
      options.config ?? config,
      options.source ?? weights,
      {
        inputIds: g.input("input_ids", "int64", [b, l]),
        attentionMask: g.input("attention_mask", "int64", [b, l]),
        pixelValues: g.input("pixel_values", "float32", px.shape),
        imageGrids: grids(),
        positionIds: positions as Int32Array | Tensor,
      },
      options.build,
    );
    const session = await compile(g, {
      outputs: { hidden: out.lastHiddenState, image: out.imageEmbeds! },
    });
    try {
      const all: Record<string, Float32Array | BigInt64Array> = feeds(ids, mask);
      if (options.positions === "input") {
        const p = qwen25VLRopeIndexBatch(ids, grids(), config, mask).positionIds;
        all.position_ids = BigInt64Array.from(p, BigInt);
      }
      const r = await session.run(all);
      const f32 = (x: unknown) => (x instanceof Uint16Array ? float16ToFloat32(x) : (x as Float32Array));
      return { hidden: f32(r.hidden), image: f32(r.image) };
    } finally {
      await session.dispose();
    }
  };

  it("computes transformers' position ids and rope deltas exactly", () => {
    const { positionIds, ropeDeltas } = ropeIndex();
    expect([...positionIds]).toEqual([...tensor("out.position_ids").data]);
    expect(ropeDeltas).toEqual([...tensor("out.rope_deltas").data]);
  });

  it(`matches the vision tower through onnxruntime in fp32 (relative L2 < ${FP32_PARITY})`, async () => {
    const g = new Graph("qwen2_5_vl_vision");
    const px = tensor("in.pixel_values");
    const image = buildQwen25VLVision(g, config, weights, {
      pixelValues: g.input("pixel_values", "float32", px.shape),
      imageGrids: grids(),
    });
    const ref = tensor("out.image_embeds");
    expect(image.shape).toEqual(ref.shape);
    const session = await compile(g, { outputs: { image } });
    try {
      const out = (await session.run({ pixel_values: px.data })).image as Float32Array;
      const err = relativeL2(out, ref.data);
      report("image_embeds", err);
      expect(err).toBeLessThan(FP32_PARITY);
    } finally {
      await session.dispose();
    }
  });

  it(`matches hidden_states[-1] through onnxruntime in fp32 (relative L2 < ${FP32_PARITY})`, async () => {
    const ref = tensor("out.hidden_states_last");
    expect(ref.shape).toEqual([...sizes(), config.hiddenSize]);
    const baked = await runEncoder();
    const err = relativeL2(kept(baked.hidden), kept(ref.data));
    report("hidden_states_last (baked M-RoPE tables)", err);
    expect(err).toBeLessThan(FP32_PARITY);
    const imageErr = relativeL2(baked.image, tensor("out.image_embeds").data);
    report("image_embeds (encoder graph)", imageErr);
    expect(imageErr).toBeLessThan(FP32_PARITY);
    // Position ids as a graph input: the tables are computed in the graph.
    const input = await runEncoder({ positions: "input" });
    const errInput = relativeL2(kept(input.hidden), kept(ref.data));
    report("hidden_states_last (position_ids input)", errInput);
    expect(errInput).toBeLessThan(FP32_PARITY);
  });

  it(`matches hidden_states[-1] in the float64 interpreter (relative L2 < ${FP32_PARITY})`, () => {
    const [b, l] = sizes();
    const g = new Graph("qwen2_5_vl");
    const px = tensor("in.pixel_values");
    const out = buildQwen25VLEncoder(g, config, weights, {
      inputIds: g.input("input_ids", "int64", [b, l]),
      attentionMask: g.input("attention_mask", "int64", [b, l]),
      pixelValues: g.input("pixel_values", "float32", px.shape),
      imageGrids: grids(),
      positionIds: ropeIndex().positionIds,
    });
    const [hidden, image] = evaluate(g, feeds(), [out.lastHiddenState, out.imageEmbeds!]);
    const err = relativeL2(kept(hidden!), kept(tensor("out.hidden_states_last").data));
    const imageErr = relativeL2(image!, tensor("out.image_embeds").data);
    report("interpreter hidden_states_last", err);
    report("interpreter image_embeds", imageErr);
    expect(err).toBeLessThan(FP32_PARITY);
    expect(imageErr).toBeLessThan(FP32_PARITY);
  });

  it(`computes in fp16 from fp32 weights within fp16 rounding (relative L2 < ${FP16_PARITY})`, async () => {
    const out = await runEncoder({ build: { dtype: "float16" } });
    const err = relativeL2(kept(out.hidden), kept(tensor("out.hidden_states_last").data));
    const imageErr = relativeL2(out.image, tensor("out.image_embeds").data);
    console.log(
      `${fixture.name}: fp16 relative L2: hidden ${err.toExponential(2)}, image ${imageErr.toExponential(2)}`,
    );
    expect(err).toBeLessThan(FP16_PARITY);
    expect(imageErr).toBeLessThan(FP16_PARITY);
  });

  it("has teeth: all-full vision attention and swapped h/w positions move the output far beyond the bound", async () => {
    const ref = kept(tensor("out.hidden_states_last").data);
    const errors: Record<string, number> = {};
    const v = config.vision;
    if (v.fullattBlockIndexes.length < v.depth) {
      const allFull = { ...config, vision: { ...v, fullattBlockIndexes: [...Array(v.depth).keys()] } };
      errors.allFullAttention = relativeL2(kept((await runEncoder({ config: allFull })).hidden), ref);
    }
    const { positionIds } = ropeIndex();
    const n = positionIds.length / 3;
    const swapped = Int32Array.from(positionIds);
    swapped.set(positionIds.subarray(2 * n), n);
    swapped.set(positionIds.subarray(n, 2 * n), 2 * n);
    errors.swappedHW = relativeL2(kept((await runEncoder({ positions: swapped })).hidden), ref);
    console.log(`${fixture.name}: relative L2 of deliberate mistakes`, errors);
    for (const e of Object.values(errors)) expect(e).toBeGreaterThan(1e-3);
  });

  it("reads transformers ≥ 4.52's key layout the same, and names a missing key", async () => {
    const renamed = (name: string) =>
      name.startsWith("visual.")
        ? `model.${name}`
        : name.startsWith("model.")
          ? `model.language_model.${name.slice("model.".length)}`
          : name;
    const source = (drop?: string) =>
      memoryWeightSource(
        new Map(
          [...fp32]
            .filter(([n]) => renamed(n) !== drop)
            .map(([n, t]) => [renamed(n), { dtype: "float32", shape: t.shape, data: t.data }]),
        ),
      );
    const baked = await runEncoder();
    const newer = await runEncoder({ source: source() });
    expect(relativeL2(newer.hidden, baked.hidden)).toBe(0);
    const missing = "model.language_model.layers.0.self_attn.k_proj.bias";
    const [b, l] = sizes();
    const build = (src: WeightSource) => {
      const g = new Graph();
      return buildQwen25VLEncoder(g, config, src, {
        inputIds: g.input("input_ids", "int64", [b, l]),
        pixelValues: g.input("pixel_values", "float32", tensor("in.pixel_values").shape),
        imageGrids: grids(),
        positionIds: ropeIndex().positionIds,
      });
    };
    expect(() => build(source(missing))).toThrow(WeightError);
    expect(() => build(source(missing))).toThrow(new RegExp(`"${missing.replaceAll(".", "\\.")}".*missing`));
    expect(() => build(memoryWeightSource(new Map()))).toThrow(/no Qwen2.5-VL vision tower/);
  });

  it("applies lm_head at the last token or at given positions: lm_head(hidden_states[-1]) to fp32 rounding", async () => {
    const [b, l] = sizes();
    const px = tensor("in.pixel_values");
    const hidden = tensor("out.hidden_states_last").data;
    const d = config.hiddenSize;
    const host = (w: Float32Array, row: number) =>
      Float64Array.from({ length: config.vocabSize }, (_, v) => {
        let s = 0;
        for (let j = 0; j < d; j++) s += w[v * d + j]! * hidden[row * d + j]!;
        return s;
      });
    const run = async (at: "last" | "input", cfg = config, source = weights) => {
      const g = new Graph("qwen2_5_vl_logits");
      const positions = at === "input" ? g.input("answer_at", "int64", [b]) : "last";
      const out = buildQwen25VLEncoder(
        g,
        cfg,
        source,
        {
          inputIds: g.input("input_ids", "int64", [b, l]),
          pixelValues: g.input("pixel_values", "float32", px.shape),
          imageGrids: grids(),
          positionIds: ropeIndex().positionIds,
        },
        { logitsAt: positions },
      );
      expect(out.logits!.shape).toEqual([b, cfg.vocabSize]);
      const session = await compile(g, { outputs: { logits: out.logits! } });
      try {
        const { attention_mask: _, ...rest } = feeds();
        const all =
          at === "input"
            ? { ...rest, answer_at: BigInt64Array.from({ length: b }, () => BigInt(l - 2)) }
            : rest;
        return (await session.run(all)).logits as Float32Array;
      } finally {
        await session.dispose();
      }
    };
    const head = fp32.get("lm_head.weight")!.data;
    const last = relativeL2(await run("last"), host(head, l - 1));
    const given = relativeL2(await run("input"), host(head, l - 2));
    // Tied embeddings (Qwen2.5-VL-3B): without lm_head.weight the input table is the output embedding.
    const tied = memoryWeightSource(
      new Map(
        [...fp32]
          .filter(([n]) => n !== "lm_head.weight")
          .map(([n, t]) => [n, { dtype: "float32", shape: t.shape, data: t.data }]),
      ),
    );
    const tiedErr = relativeL2(
      await run("last", { ...config, tieWordEmbeddings: true }, tied),
      host(fp32.get("model.embed_tokens.weight")!.data, l - 1),
    );
    console.log(`${fixture.name}: lm_head logits relative L2`, { last, given, tied: tiedErr });
    for (const e of [last, given, tiedErr]) expect(e).toBeLessThan(FP32_PARITY);
    expect(relativeL2(await run("last"), host(head, l - 2))).toBeGreaterThan(1e-2);
    await expect(run("last", config, tied)).rejects.toThrow(/lm_head\.weight/);
  });

  it("stacks a batch: the fixture's rows twice over, with the images twice over, give the reference twice", async () => {
    const [b, l] = sizes();
    const ids = [...rows("in.input_ids"), ...rows("in.input_ids")];
    const mask = [...rows("in.attention_mask"), ...rows("in.attention_mask")];
    const px = tensor("in.pixel_values");
    const doubled = Float32Array.from([...px.data, ...px.data]);
    const twice = [...grids(), ...grids()];
    const g = new Graph("qwen2_5_vl_batch");
    const out = buildQwen25VLEncoder(g, config, weights, {
      inputIds: g.input("input_ids", "int64", [2 * b, l]),
      attentionMask: g.input("attention_mask", "int64", [2 * b, l]),
      pixelValues: g.input("pixel_values", "float32", [2 * px.shape[0]!, px.shape[1]!]),
      imageGrids: twice,
      positionIds: qwen25VLRopeIndexBatch(ids, twice, config, mask).positionIds,
    });
    const session = await compile(g, { outputs: { hidden: out.lastHiddenState } });
    try {
      const hidden = (await session.run({ ...feeds(ids, mask), pixel_values: doubled }))
        .hidden as Float32Array;
      const half = b * l * config.hiddenSize;
      const ref = kept(tensor("out.hidden_states_last").data);
      for (const part of [hidden.subarray(0, half), hidden.subarray(half)]) {
        expect(relativeL2(kept(part), ref)).toBeLessThan(FP32_PARITY);
      }
    } finally {
      await session.dispose();
    }
  });

  it("masks left padding: the kept tokens' states do not change; unmasked, they do", async () => {
    const ids = rows("in.input_ids");
    const mask = rows("in.attention_mask");
    const pad = 3;
    const padIds = ids.map((r) => [...Array(pad).fill(0), ...r]);
    const padMask = mask.map((r) => [...Array(pad).fill(0), ...r]);
    const plain = await runEncoder();
    const masked = await runEncoder({ ids: padIds, mask: padMask });
    const leaky = await runEncoder({ ids: padIds, mask: padMask.map((r) => r.map(() => 1)) });
    const width = config.hiddenSize;
    const l = ids[0]!.length;
    const unpad = (data: Float32Array) =>
      kept(
        Float32Array.from(
          ids.flatMap((_, b) => [
            ...data.subarray((b * (l + pad) + pad) * width, (b + 1) * (l + pad) * width),
          ]),
        ),
      );
    const errors = {
      masked: relativeL2(unpad(masked.hidden), kept(plain.hidden)),
      unmasked: relativeL2(unpad(leaky.hidden), kept(plain.hidden)),
    };
    console.log(`${fixture.name}: ${pad} left-padded tokens, relative L2 to the unpadded run`, errors);
    // Masked keys get exactly zero weight; only fp32 summation order differs.
    expect(errors.masked).toBeLessThan(1e-6);
    expect(errors.unmasked).toBeGreaterThan(1e-3);
  });
});
