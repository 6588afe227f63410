import {
  closeDefaultRuntime,
  compile,
  evaluate,
  float16ToFloat32,
  float32ToFloat16,
  Graph,
} from "@edit-r1/engine";
import { fixturesOfKind, noise, readAllFloat32, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClipTextConfig, parseClipTextConfig } from "./clip-text-config.js";
import { buildClipTextModel, clipPoolingPositions, clipTextInputs } from "./clip-text-model.js";
import { ModelConfigError } from "./model-config-error.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { memoryWeightSource, type WeightEntry, WeightError, type WeightSource } from "./weight-source.js";

afterAll(async () => {
  await closeDefaultRuntime();
});

/**
 * Relative L2 to transformers' CLIPTextModel (fixtures/clip-text-model: the unmodified modeling file, fp32).
 * Measured on clip-text-model (B 2, L 77, 2 layers): onnxruntime fp32 last_hidden_state 1.24e-7,
 * pooler_output 1.31e-7; our float64 interpreter 1.07e-7 and 1.07e-7 (the fixture's own float64 rerun is
 * 1.1e-7 from it). GELU for quick_gelu moves last_hidden_state by 1.96e-3.
 */
const PARITY = 1e-5;

const fixtures = fixturesOfKind("clip-text-model");

it("finds at least one clip-text-model fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

describe.each(fixtures.map((f) => [f.name, f] as const))(
  "CLIPTextModel vs transformers fixture %s",
  (_, fixture) => {
    const config = parseClipTextConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
    let io: Awaited<ReturnType<typeof readFixtureIo>>;
    let weights: WeightSource;
    let shape: [number, number];
    let feeds: { input_ids: BigInt64Array; eos_positions: BigInt64Array };
    beforeAll(async () => {
      io = await readFixtureIo(fixture);
      weights = await openSafetensorsWeights(fixture.weightsPath);
      const ids = io.get("in.input_ids")!;
      shape = ids.shape as [number, number];
      const [batch, length] = shape;
      const rows = Array.from({ length: batch }, (_, b) => ids.data.subarray(b * length, (b + 1) * length));
      feeds = {
        input_ids: BigInt64Array.from(ids.data, BigInt),
        eos_positions: clipPoolingPositions(rows, config),
      };
    });

    const build = (cfg: ClipTextConfig = config, src: WeightSource = weights) => {
      const g = new Graph("clip");
      const inputs = clipTextInputs(g, { batch: shape[0], length: shape[1] });
      return { g, ...buildClipTextModel(g, cfg, src, inputs) };
    };
    const runOrt = async (cfg?: ClipTextConfig, src?: WeightSource) => {
      const { g, lastHiddenState, pooled } = build(cfg, src);
      const s = await compile(g, { outputs: { last: lastHiddenState, pooled } });
      try {
        const out = await s.run(feeds);
        return { last: out.last as Float32Array, pooled: out.pooled as Float32Array };
      } finally {
        await s.dispose();
      }
    };

    it(`matches last_hidden_state and pooler_output through onnxruntime fp32 (relative L2 < ${PARITY})`, async () => {
      const { last, pooled } = await runOrt();
      const errLast = relativeL2(last, io.get("out.last_hidden_state")!.data);
      const errPool = relativeL2(pooled, io.get("out.pooler_output")!.data);
      console.log(
        `${fixture.name}: onnxruntime fp32 last ${errLast.toExponential(2)}, pooled ${errPool.toExponential(2)}`,
      );
      expect(errLast).toBeLessThan(PARITY);
      expect(errPool).toBeLessThan(PARITY);
    });

    it(`matches them in the float64 interpreter too (relative L2 < ${PARITY})`, () => {
      const { g, lastHiddenState, pooled } = build();
      const [last, pool] = evaluate(g, feeds, [lastHiddenState, pooled]);
      const errLast = relativeL2(last!, io.get("out.last_hidden_state")!.data);
      const errPool = relativeL2(pool!, io.get("out.pooler_output")!.data);
      console.log(
        `${fixture.name}: interpreter last ${errLast.toExponential(2)}, pooled ${errPool.toExponential(2)}`,
      );
      expect(errLast).toBeLessThan(PARITY);
      expect(errPool).toBeLessThan(PARITY);
    });

    it("has teeth: the other GELU is far outside the tolerance", async () => {
      const other = config.hiddenAct === "quick_gelu" ? "gelu" : "quick_gelu";
      const { last } = await runOrt({ ...config, hiddenAct: other });
      const err = relativeL2(last, io.get("out.last_hidden_state")!.data);
      console.log(`${fixture.name}: ${other} instead of ${config.hiddenAct}: ${err.toExponential(2)}`);
      expect(err).toBeGreaterThan(100 * PARITY);
    });

    it("computes the same from fp16-stored weights as from the same values in fp32 (the cast is exact)", async () => {
      // FLUX ships CLIP in fp16: stored-fp16 weights are cast inside the graph.
      const all = await readAllFloat32(fixture.weightsPath);
      const entries = (half: boolean) =>
        memoryWeightSource(
          new Map(
            [...all].map(([k, t]) => {
              const h = float32ToFloat16(t.data);
              const e: WeightEntry = half
                ? { dtype: "float16", shape: t.shape, data: h }
                : { dtype: "float32", shape: t.shape, data: float16ToFloat32(h) };
              return [k, e];
            }),
          ),
        );
      const fromHalf = await runOrt(config, entries(true));
      const fromRounded = await runOrt(config, entries(false));
      const err = relativeL2(fromHalf.pooled, fromRounded.pooled);
      console.log(`${fixture.name}: fp16-stored vs fp16-rounded fp32 weights: ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-6);
    });
  },
);

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

describe("CLIP text model on tiny random weights", () => {
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
  it("pools at the first EOS under both of transformers' rules", () => {
    expect([...clipPoolingPositions(rows, config)]).toEqual([4n, 7n]);
    const byId = { ...config, eosTokenId: 29 };
    expect([...clipPoolingPositions(rows, byId)]).toEqual([4n, 7n]);
    // The legacy argmax rule and the eos-id rule differ when a larger id precedes the EOS.
    expect([...clipPoolingPositions([[1, 40, 29, 29]], config)]).toEqual([1n]);
    expect([...clipPoolingPositions([[1, 40, 29, 29]], byId)]).toEqual([2n]);
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
