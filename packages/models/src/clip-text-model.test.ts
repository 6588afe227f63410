import {
  closeDefaultRuntime,
  compile,
  evaluate,
  float16ToFloat32,
  float32ToFloat16,
  Graph,
} from "@edit-r1/engine";
import { noise, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, describe, expect, it } from "vitest";
import { parseClipTextConfig } from "./clip-text-config.js";
import { buildClipTextModel, clipPoolingPositions, clipTextInputs } from "./clip-text-model.js";
import { ModelConfigError } from "./model-config-error.js";
import { referenceClipText } from "./test-text-reference.js";
import { memoryWeightSource, type WeightEntry, WeightError } from "./weight-source.js";

afterAll(async () => {
  await closeDefaultRuntime();
});

const json = {
  vocab_size: 30,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  max_position_embeddings: 10,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  eos_token_id: 2,
};
const config = parseClipTextConfig(json);

function tinyWeights(seed = 1): Map<string, Float32Array> {
  const { vocabSize: V, hiddenSize: D, intermediateSize: F, maxPositionEmbeddings: P } = config;
  const shapes: [string, number][] = [
    ["text_model.embeddings.token_embedding.weight", V * D],
    ["text_model.embeddings.position_embedding.weight", P * D],
    ["text_model.final_layer_norm.weight", D],
    ["text_model.final_layer_norm.bias", D],
  ];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const n = `text_model.encoder.layers.${l}.`;
    for (const m of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      shapes.push([`${n}self_attn.${m}.weight`, D * D], [`${n}self_attn.${m}.bias`, D]);
    }
    shapes.push([`${n}layer_norm1.weight`, D], [`${n}layer_norm1.bias`, D]);
    shapes.push([`${n}layer_norm2.weight`, D], [`${n}layer_norm2.bias`, D]);
    shapes.push([`${n}mlp.fc1.weight`, F * D], [`${n}mlp.fc1.bias`, F]);
    shapes.push([`${n}mlp.fc2.weight`, D * F], [`${n}mlp.fc2.bias`, D]);
  }
  const out = new Map<string, Float32Array>();
  shapes.forEach(([k, n], i) => {
    // Norm weights near 1 keep activations in a realistic range.
    const v = noise(n, seed * 1000 + i, 0.5);
    if (k.endsWith("norm1.weight") || k.endsWith("norm2.weight") || k.endsWith("final_layer_norm.weight")) {
      for (let j = 0; j < n; j++) v[j] = 1 + v[j]! * 0.2;
    }
    out.set(k, v);
  });
  return out;
}

function source(weights: Map<string, Float32Array>) {
  const shapeOf = (k: string): number[] => {
    const { vocabSize: V, hiddenSize: D, intermediateSize: F, maxPositionEmbeddings: P } = config;
    if (k.endsWith("token_embedding.weight")) return [V, D];
    if (k.endsWith("position_embedding.weight")) return [P, D];
    if (k.endsWith("fc1.weight")) return [F, D];
    if (k.endsWith("fc2.weight")) return [D, F];
    if (k.endsWith("fc1.bias")) return [F];
    if (k.includes("_proj.weight")) return [D, D];
    return [D];
  };
  return memoryWeightSource(
    new Map(
      [...weights].map(([k, v]) => [k, { dtype: "float32", shape: shapeOf(k), data: v } as WeightEntry]),
    ),
  );
}

// Two rows padded with EOS (29) after their first EOS, as FLUX's CLIP tokenizer pads.
const rows = [
  [28, 5, 9, 13, 29, 29, 29, 29, 29, 29],
  [28, 7, 3, 3, 21, 17, 8, 29, 29, 29],
];

describe("CLIP text model", () => {
  const weights = tinyWeights();
  const build = () => {
    const g = new Graph("clip");
    const inputs = clipTextInputs(g, { batch: 2, length: 10 });
    return { g, ...buildClipTextModel(g, config, source(weights), inputs) };
  };
  const feeds = {
    input_ids: BigInt64Array.from(rows.flat(), BigInt),
    eos_positions: clipPoolingPositions(rows, config),
  };
  const referenceFor = (w: Map<string, Float32Array>) =>
    rows.map((ids) =>
      referenceClipText(
        w,
        { hidden: 16, heads: 2, layers: 2, intermediate: 24, eps: 1e-5 },
        ids,
        ids.indexOf(29),
      ),
    );
  const reference = referenceFor(weights);

  it("pools at the first EOS under both of transformers' rules", () => {
    expect([...clipPoolingPositions(rows, config)]).toEqual([4n, 7n]);
    const byId = { ...config, eosTokenId: 29 };
    expect([...clipPoolingPositions(rows, byId)]).toEqual([4n, 7n]);
    // The legacy argmax rule and the eos-id rule differ when a larger id precedes the EOS.
    expect([...clipPoolingPositions([[1, 40, 29, 29]], config)]).toEqual([1n]);
    expect([...clipPoolingPositions([[1, 40, 29, 29]], byId)]).toEqual([2n]);
  });

  // Not exact: scalar constants of the graph (quick_gelu's 1.702, the scale) are float32.
  it("matches a plain float64 CLIPTextModel in the interpreter (last state and pooled, rel L2 < 1e-7)", () => {
    const { g, lastHiddenState, pooled } = build();
    const [last, pool] = evaluate(g, feeds, [lastHiddenState, pooled]);
    const refLast = Float64Array.from(reference.flatMap((r) => [...r.last]));
    const refPool = Float64Array.from(reference.flatMap((r) => [...r.pooled]));
    expect(relativeL2(last!, refLast)).toBeLessThan(1e-7);
    expect(relativeL2(pool!, refPool)).toBeLessThan(1e-7);
  });

  it("matches it through onnxruntime in float32, also from fp16 weights (rel L2 < 1e-4)", async () => {
    const refPool = Float64Array.from(reference.flatMap((r) => [...r.pooled]));
    const { g, pooled } = build();
    const s = await compile(g, { outputs: { pooled } });
    try {
      const out = (await s.run(feeds)).pooled as Float32Array;
      expect(relativeL2(out, refPool)).toBeLessThan(1e-4);
    } finally {
      await s.dispose();
    }
    // FLUX ships CLIP in fp16: stored-fp16 weights are cast inside the graph.
    const g16 = new Graph("clip16");
    const half = memoryWeightSource(
      new Map(
        [...source(weights).names()].map((k) => {
          const e = source(weights).get(k)!;
          return [k, { dtype: "float16", shape: e.shape, data: float32ToFloat16(e.data as Float32Array) }];
        }),
      ),
    );
    const out16 = buildClipTextModel(g16, config, half, clipTextInputs(g16, { batch: 2, length: 10 }));
    const s16 = await compile(g16, { outputs: { pooled: out16.pooled } });
    try {
      const out = (await s16.run(feeds)).pooled as Float32Array;
      // Against the reference on the same fp16-rounded weights: the cast inside the graph is exact.
      const rounded = new Map([...weights].map(([k, v]) => [k, float16ToFloat32(float32ToFloat16(v))]));
      const refRounded = Float64Array.from(referenceFor(rounded).flatMap((r) => [...r.pooled]));
      expect(relativeL2(out, refRounded)).toBeLessThan(1e-4);
    } finally {
      await s16.dispose();
    }
  });

  it("is causal: changing a later token leaves earlier states unchanged", () => {
    const { g, lastHiddenState } = build();
    const changed = rows.map((r) => [...r]);
    changed[0]![6] = 11;
    const [a] = evaluate(g, feeds, [lastHiddenState]);
    const [b] = evaluate(g, { ...feeds, input_ids: BigInt64Array.from(changed.flat(), BigInt) }, [
      lastHiddenState,
    ]);
    const D = 16;
    expect(relativeL2(a!.slice(0, 6 * D), b!.slice(0, 6 * D))).toBe(0);
    expect(relativeL2(a!.slice(6 * D, 7 * D), b!.slice(6 * D, 7 * D))).toBeGreaterThan(1e-3);
  });

  it("names a missing or mis-shaped weight", () => {
    const broken = new Map(weights);
    broken.delete("text_model.encoder.layers.1.mlp.fc2.bias");
    const g = new Graph("clip");
    expect(() =>
      buildClipTextModel(g, config, source(broken), clipTextInputs(g, { batch: 1, length: 10 })),
    ).toThrow(/"text_model.encoder.layers.1.mlp.fc2.bias".*missing/);
    const wrong = parseClipTextConfig({ ...json, intermediate_size: 20 });
    const g2 = new Graph("clip");
    expect(() =>
      buildClipTextModel(g2, wrong, source(weights), clipTextInputs(g2, { batch: 1, length: 10 })),
    ).toThrow(WeightError);
  });

  it("rejects more positions than the model has, and configs it cannot honour", () => {
    const g = new Graph("clip");
    expect(() =>
      buildClipTextModel(g, config, source(weights), clipTextInputs(g, { batch: 1, length: 11 })),
    ).toThrow(/11 positions but the model has 10/);
    expect(() => parseClipTextConfig({ ...json, hidden_act: "relu" })).toThrow(ModelConfigError);
    expect(() => parseClipTextConfig({ ...json, num_attention_heads: 3 })).toThrow(/divisible/);
    // A full CLIPConfig is read through its text_config.
    expect(parseClipTextConfig({ text_config: json, vision_config: {} }).hiddenSize).toBe(16);
  });
});
