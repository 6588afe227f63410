import {
  bfloat16ToFloat32,
  closeDefaultRuntime,
  compile,
  evaluate,
  float32ToBfloat16,
  Graph,
} from "@edit-r1/engine";
import { noise, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, describe, expect, it } from "vitest";
import { ModelConfigError } from "./model-config-error.js";
import { buildT5Encoder, t5RelativePositionBuckets } from "./t5-encoder.js";
import { parseT5EncoderConfig } from "./t5-encoder-config.js";
import { referenceT5Encoder } from "./test-text-reference.js";
import { memoryWeightSource, type WeightEntry } from "./weight-source.js";

afterAll(async () => {
  await closeDefaultRuntime();
});

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

describe("T5 encoder", () => {
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
  const ref = (round = (x: Float32Array) => x) => {
    const plain = new Map([...weights].map(([k, t]) => [k, round(t.data)]));
    const c = { dModel: 16, dKv: 4, heads: 3, dFf: 24, layers: 2, buckets: 8, maxDistance: 16, eps: 1e-6 };
    return Float64Array.from(rows.flatMap((r) => [...referenceT5Encoder(plain, c, r)]));
  };
  const build = (src = source()) => {
    const g = new Graph("t5");
    const ids = g.input("input_ids", "int64", [2, 14]);
    return { g, out: buildT5Encoder(g, config, src, ids) };
  };

  it("matches a plain float64 T5EncoderModel in the interpreter (rel L2 < 1e-7)", () => {
    const { g, out } = build();
    const [y] = evaluate(g, feeds, [out]);
    expect(relativeL2(y!, ref())).toBeLessThan(1e-7);
  });

  it("matches it through onnxruntime in float32, also from bf16 weights (rel L2 < 1e-4)", async () => {
    const { g, out } = build();
    const s = await compile(g, { outputs: { out } });
    try {
      expect(relativeL2((await s.run(feeds)).out as Float32Array, ref())).toBeLessThan(1e-4);
    } finally {
      await s.dispose();
    }
    const b = build(source("bfloat16"));
    const s2 = await compile(b.g, { outputs: { out: b.out } });
    try {
      // Against the reference run on the same bf16-rounded weights: the cast inside the graph is exact.
      const rounded = ref((x) => bfloat16ToFloat32(float32ToBfloat16(x)));
      expect(relativeL2((await s2.run(feeds)).out as Float32Array, rounded)).toBeLessThan(1e-4);
    } finally {
      await s2.dispose();
    }
  });

  it("reads the embedding from encoder.embed_tokens.weight when shared.weight is absent", () => {
    const { g, out } = build(
      source("float32", (k) => (k === "shared.weight" ? "encoder.embed_tokens.weight" : k)),
    );
    const [y] = evaluate(g, feeds, [out]);
    expect(relativeL2(y!, ref())).toBeLessThan(1e-7);
  });

  it("has no attention mask: padding tokens change the states of the real tokens", () => {
    const { g, out } = build();
    const other = rows.map((r) => [...r]);
    other[0]![10] = 30; // a pad position of row 0
    const [a] = evaluate(g, feeds, [out]);
    const [b] = evaluate(g, { input_ids: BigInt64Array.from(other.flat(), BigInt) }, [out]);
    expect(relativeL2(a!.slice(0, 16), b!.slice(0, 16))).toBeGreaterThan(1e-6);
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
