import {
  bfloat16ToFloat32,
  closeDefaultRuntime,
  compile,
  evaluate,
  float32ToBfloat16,
  Graph,
} from "@edit-r1/engine";
import { fixturesOfKind, noise, readAllFloat32, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelConfigError } from "./model-config-error.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { buildT5Encoder, t5RelativePositionBuckets } from "./t5-encoder.js";
import { parseT5EncoderConfig } from "./t5-encoder-config.js";
import { memoryWeightSource, type WeightEntry, type WeightSource } from "./weight-source.js";

afterAll(async () => {
  await closeDefaultRuntime();
});

/**
 * Relative L2 to transformers' T5EncoderModel (fixtures/t5-encoder: the unmodified modeling file, fp32). It
 * has to be this tight: exact GELU for the tanh "gelu_new" moves the output by only 6.4e-5.
 * Measured on t5-encoder (B 2, L 160 > max distance 128, 2 blocks): onnxruntime fp32 2.12e-7 with the mask,
 * 2.26e-7 without; our float64 interpreter 1.99e-7 and 2.72e-7 (the fixture's own float64 rerun: 2.0e-7).
 * Ignoring the mask moves out.last_hidden_state by 1.6e-1, a doubled relative-position range by 8.3e-2.
 */
const PARITY = 1e-5;

const fixtures = fixturesOfKind("t5-encoder");

it("finds at least one t5-encoder fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

describe.each(fixtures.map((f) => [f.name, f] as const))(
  "T5EncoderModel vs transformers fixture %s",
  (_, fixture) => {
    const config = parseT5EncoderConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
    let io: Awaited<ReturnType<typeof readFixtureIo>>;
    let weights: WeightSource;
    let shape: [number, number];
    let ids: BigInt64Array;
    let mask: Float32Array;
    beforeAll(async () => {
      io = await readFixtureIo(fixture);
      weights = await openSafetensorsWeights(fixture.weightsPath);
      const t = io.get("in.input_ids")!;
      shape = t.shape as [number, number];
      ids = BigInt64Array.from(t.data, BigInt);
      const m = io.get("in.attention_mask")!;
      expect(m.shape).toEqual(shape);
      mask = m.data;
    });

    const build = (withMask: boolean, cfg = config, src: WeightSource = weights) => {
      const g = new Graph("t5");
      const inputIds = g.input("input_ids", "int64", shape);
      const attentionMask = withMask ? g.input("attention_mask", "float32", shape) : undefined;
      return { g, out: buildT5Encoder(g, cfg, src, inputIds, { attentionMask }) };
    };
    const feedsFor = (withMask: boolean): Record<string, BigInt64Array | Float32Array> =>
      withMask ? { input_ids: ids, attention_mask: mask } : { input_ids: ids };
    const runOrt = async (withMask: boolean, cfg = config, src: WeightSource = weights) => {
      const { g, out } = build(withMask, cfg, src);
      const s = await compile(g, { outputs: { out } });
      try {
        return (await s.run(feedsFor(withMask))).out as Float32Array;
      } finally {
        await s.dispose();
      }
    };
    const expected = (withMask: boolean) =>
      io.get(withMask ? "out.last_hidden_state" : "out.last_hidden_state_nomask")!.data;

    it.each([
      [true, "out.last_hidden_state"],
      [false, "out.last_hidden_state_nomask"],
    ])(`with the mask %s matches %s through onnxruntime fp32 (relative L2 < ${PARITY})`, async (withMask) => {
      const err = relativeL2(await runOrt(withMask), expected(withMask));
      console.log(`${fixture.name}: onnxruntime fp32, mask ${withMask}: ${err.toExponential(2)}`);
      expect(err).toBeLessThan(PARITY);
    });

    it(`matches both in the float64 interpreter too (relative L2 < ${PARITY})`, () => {
      for (const withMask of [true, false]) {
        const { g, out } = build(withMask);
        const [y] = evaluate(g, feedsFor(withMask), [out]);
        const err = relativeL2(y!, expected(withMask));
        console.log(`${fixture.name}: interpreter, mask ${withMask}: ${err.toExponential(2)}`);
        expect(err).toBeLessThan(PARITY);
      }
    });

    it("has teeth: ignoring the mask, or a relative-position range twice as long, is far off", async () => {
      // Only meaningful when some position is padded; a fixture without pads checks the rest.
      const padded = mask.some((m) => m === 0);
      const noMask = relativeL2(await runOrt(false), expected(true));
      const cfg = { ...config, relativeAttentionMaxDistance: 2 * config.relativeAttentionMaxDistance };
      const farther = relativeL2(await runOrt(true, cfg), expected(true));
      console.log(
        `${fixture.name}: mask ignored ${noMask.toExponential(2)}, max distance ×2 ${farther.toExponential(2)}`,
      );
      if (padded) expect(noMask).toBeGreaterThan(100 * PARITY);
      expect(farther).toBeGreaterThan(100 * PARITY);
    });

    it("computes the same from bf16-stored weights as from the same values in fp32 (the cast is exact)", async () => {
      // FLUX ships T5 in bf16: stored-bf16 weights are cast inside the graph.
      const all = await readAllFloat32(fixture.weightsPath);
      const entries = (bf16: boolean) =>
        memoryWeightSource(
          new Map(
            [...all].map(([k, t]) => {
              const b = float32ToBfloat16(t.data);
              const e: WeightEntry = bf16
                ? { dtype: "bfloat16", shape: t.shape, data: b }
                : { dtype: "float32", shape: t.shape, data: bfloat16ToFloat32(b) };
              return [k, e];
            }),
          ),
        );
      const err = relativeL2(
        await runOrt(true, config, entries(true)),
        await runOrt(true, config, entries(false)),
      );
      console.log(`${fixture.name}: bf16-stored vs bf16-rounded fp32 weights: ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-6);
    });

    it("reads the embedding from encoder.embed_tokens.weight when shared.weight is absent", async () => {
      const all = await readAllFloat32(fixture.weightsPath);
      const renamed = memoryWeightSource(
        new Map(
          [...all].map(([k, t]) => {
            const e: WeightEntry = { dtype: "float32", shape: t.shape, data: t.data };
            return [k === "shared.weight" ? "encoder.embed_tokens.weight" : k, e];
          }),
        ),
      );
      expect(relativeL2(await runOrt(true, config, renamed), expected(true))).toBeLessThan(PARITY);
    });
  },
);

describe("t5RelativePositionBuckets", () => {
  it("gives T5-XXL's buckets (32 buckets, max distance 128) worked out by hand", () => {
    const L = 200;
    const b = t5RelativePositionBuckets(L, 32, 128);
    // Bucket of relative position j − i, read from query row 100.
    const at = (rel: number) => b[100 * L + 100 + rel]!;
    expect(at(0)).toBe(0);
    expect(at(-1)).toBe(1);
    expect(at(1)).toBe(17); // positive offsets use the upper 16 buckets
    expect(at(-7)).toBe(7);
    expect(at(7)).toBe(23);
    expect(at(8)).toBe(24); // 8 + ⌊ln(8/8)/ln(16)·8⌋ = 8, + 16
    expect(at(-20)).toBe(10); // 8 + ⌊ln(2.5)/ln(16)·8⌋ = 8 + ⌊2.64⌋
    expect(at(-31)).toBe(11); // ln(3.875)/ln(16)·8 = 3.91
    expect(at(-32)).toBe(12); // exactly 4
    expect(at(-99)).toBe(15); // 8 + ⌊7.45⌋
    expect(at(-100)).toBe(15); // capped at 15 from here on
    expect(at(99)).toBe(31);
  });
});

const json = {
  vocab_size: 40,
  d_model: 16,
  d_kv: 4,
  d_ff: 24,
  num_layers: 2,
  num_heads: 3,
  relative_attention_num_buckets: 8,
  relative_attention_max_distance: 16,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: "gated-gelu",
};
const config = parseT5EncoderConfig(json);
const inner = 12;

function tinyWeights(): Map<string, { shape: number[]; data: Float32Array }> {
  const D = config.dModel;
  const F = config.dFf;
  const shapes: [string, number[]][] = [
    ["shared.weight", [40, D]],
    ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [8, 3]],
    ["encoder.final_layer_norm.weight", [D]],
  ];
  for (let l = 0; l < 2; l++) {
    const n = `encoder.block.${l}.layer.`;
    for (const m of ["q", "k", "v"]) shapes.push([`${n}0.SelfAttention.${m}.weight`, [inner, D]]);
    shapes.push([`${n}0.SelfAttention.o.weight`, [D, inner]], [`${n}0.layer_norm.weight`, [D]]);
    shapes.push([`${n}1.DenseReluDense.wi_0.weight`, [F, D]], [`${n}1.DenseReluDense.wi_1.weight`, [F, D]]);
    shapes.push([`${n}1.DenseReluDense.wo.weight`, [D, F]], [`${n}1.layer_norm.weight`, [D]]);
  }
  return new Map(
    shapes.map(([k, shape], i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = noise(n, 77 + i, k.includes("relative_attention_bias") ? 2 : 0.6);
      if (k.endsWith("layer_norm.weight")) for (let j = 0; j < n; j++) data[j] = 1 + data[j]! * 0.3;
      return [k, { shape, data }];
    }),
  );
}

describe("T5 encoder on tiny random weights", () => {
  const weights = tinyWeights();
  const source = (dtype: "float32" | "bfloat16" = "float32", rename = (k: string) => k) =>
    memoryWeightSource(
      new Map(
        [...weights].map(([k, t]) => [
          rename(k),
          {
            dtype,
            shape: t.shape,
            data: dtype === "float32" ? t.data : float32ToBfloat16(t.data),
          } as WeightEntry,
        ]),
      ),
    );
  // Length 14 reaches the logarithmic buckets (|j − i| ≥ 2) and the cap (≥ 16 is out of reach, 13 is not).
  const rows = [
    [5, 9, 13, 22, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [7, 3, 3, 21, 17, 8, 33, 39, 2, 11, 4, 6, 1, 0],
  ];
  const feeds = { input_ids: BigInt64Array.from(rows.flat(), BigInt) };
  const build = (src = source()) => {
    const g = new Graph("t5");
    const ids = g.input("input_ids", "int64", [2, 14]);
    return { g, out: buildT5Encoder(g, config, src, ids) };
  };

  it("without a mask, padding tokens change the states of the real tokens; with one, they do not", () => {
    const other = rows.map((r) => [...r]);
    other[0]![10] = 30; // a pad position of row 0
    const otherFeeds = { input_ids: BigInt64Array.from(other.flat(), BigInt) };
    const { g, out } = build();
    const [a] = evaluate(g, feeds, [out]);
    const [b] = evaluate(g, otherFeeds, [out]);
    expect(relativeL2(a!.slice(0, 16), b!.slice(0, 16))).toBeGreaterThan(1e-6);

    // 1 up to and including each row's EOS (id 1), 0 for the pads after it.
    const attention = rows.map((r) => r.map((_, i) => (i <= r.indexOf(1) ? 1n : 0n)));
    const gm = new Graph("t5-masked");
    const attentionMask = gm.input("attention_mask", "int64", [2, 14]);
    const ids = gm.input("input_ids", "int64", [2, 14]);
    const outM = buildT5Encoder(gm, config, source(), ids, { attentionMask });
    const maskFeed = { attention_mask: BigInt64Array.from(attention.flat()) };
    const [am] = evaluate(gm, { ...feeds, ...maskFeed }, [outM]);
    const [bm] = evaluate(gm, { ...otherFeeds, ...maskFeed }, [outM]);
    // Row 0's tokens and EOS (positions 0..4) cannot see the changed pad: identical states.
    expect(relativeL2(am!.slice(0, 5 * 16), bm!.slice(0, 5 * 16))).toBe(0);
    // The changed pad still gets a state of its own, which changes (as in transformers).
    expect(relativeL2(am!.slice(10 * 16, 11 * 16), bm!.slice(10 * 16, 11 * 16))).toBeGreaterThan(1e-3);
  });

  it("names missing weights and rejects configs it cannot honour", () => {
    const src = source("float32", (k) => (k === "shared.weight" ? "embeddings" : k));
    expect(() => build(src)).toThrow(/neither "shared.weight" nor "encoder.embed_tokens.weight"/);
    expect(() => parseT5EncoderConfig({ ...json, feed_forward_proj: "swiglu" })).toThrow(ModelConfigError);
    expect(() => parseT5EncoderConfig({ ...json, relative_attention_num_buckets: 7 })).toThrow(/even/);
    const wrong = parseT5EncoderConfig({ ...json, d_ff: 20 });
    const g = new Graph("t5");
    expect(() => buildT5Encoder(g, wrong, source(), g.input("input_ids", "int64", [1, 4]))).toThrow(
      /wi_0.weight" has shape \[24, 16\] but the model config needs \[20, 16\]/,
    );
  });
});
