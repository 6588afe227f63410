import { Rng } from "@edit-r1/core";
import { closeDefaultRuntime, compile, evaluate, Graph } from "@edit-r1/engine";
import { memoryWeightSource, parseFluxTransformerConfig } from "@edit-r1/models";
import { afterAll, describe, expect, it } from "vitest";
import { initTinyWeights, tinyWeightShapes } from "./init-weights.js";
import { MICRO_TRANSFORMER_CONFIG_JSON } from "./test-micro-config.js";
import { TINY_IMAGE_TOKENS } from "./tiny-config.js";
import { buildTinyVelocity, TEXT_EMBEDDING_KEY, TEXT_POSITION_KEY, tinyImageIds } from "./tiny-velocity.js";

afterAll(async () => {
  await closeDefaultRuntime();
});

// A smaller config than the shipped one, so the interpreter (float64 JS) stays fast.
/** Image tokens of the adapter's 16×16 images (an 8×8 grid of 2×2 patches). */
const N = TINY_IMAGE_TOKENS;
const config = parseFluxTransformerConfig(MICRO_TRANSFORMER_CONFIG_JSON);
const V = 6;
const T = 4;
const B = 2;

/** Random weights with no exact zeros (adaLN-Zero init would make the output 0 and hide bugs). */
function randomSource(seed: number) {
  const shapes = tinyWeightShapes(config, V, T);
  const rng = new Rng(seed);
  return memoryWeightSource(
    new Map(
      [...shapes].map(([k, shape]) => [
        k,
        {
          dtype: "float32" as const,
          shape,
          data: rng.normals(shape.reduce((a, b) => a * b, 1)).map((v) => v * 0.3),
        },
      ]),
    ),
  );
}

function build() {
  const g = new Graph();
  const f = (name: string, shape: number[]) => g.input(name, "float32", shape);
  const inputs = {
    xt: f("xt", [B, N, 12]),
    t: f("t", [B]),
    context: f("context", [B, N, 12]),
    text: f("text", [B, T, V]),
  };
  return { g, ...buildTinyVelocity(g, config, randomSource(3), inputs) };
}

function feeds(
  seed: number,
  words: number[][] = [
    [2, 3, 0, 0],
    [4, 0, 0, 0],
  ],
) {
  const rng = new Rng(seed);
  const text = new Float32Array(B * T * V);
  for (const [b, ids] of words.entries()) {
    for (const [i, id] of ids.entries()) text[(b * T + i) * V + id] = 1;
  }
  return {
    xt: rng.normals(B * N * 12),
    t: Float32Array.of(0.3, 0.9),
    context: rng.normals(B * N * 12),
    text,
  };
}

describe("buildTinyVelocity", () => {
  it("lists every weight: the FLUX transformer's plus the word and position tables", () => {
    const shapes = tinyWeightShapes(config, V, T);
    expect(shapes.get(TEXT_EMBEDDING_KEY)).toEqual([V, 16]);
    expect(shapes.get(TEXT_POSITION_KEY)).toEqual([T, 16]);
    expect(shapes.get("x_embedder.weight")).toEqual([16, 12]);
    expect(shapes.get("proj_out.weight")).toEqual([12, 16]);
    expect(shapes.has("time_text_embed.guidance_embedder.linear_1.weight")).toBe(false);
    const init = initTinyWeights(config, { seed: 1, vocabSize: V, textTokens: T });
    expect([...init.keys()]).toEqual([...shapes.keys()]);
    // The untrained model predicts zero velocity (zero output projection), so training starts from v = 0.
    expect(init.get("proj_out.weight")!.every((v) => v === 0)).toBe(true);
  });

  it("gives Kontext position ids: target (0, r, c) then context (1, r, c)", () => {
    const ids = tinyImageIds();
    expect(ids.length).toBe(2 * N * 3);
    // Token 17 of the 8×8 grid is row 2, column 1.
    expect([...ids.subarray(17 * 3, 18 * 3)]).toEqual([0, 2, 1]);
    expect([...ids.subarray((N + 17) * 3, (N + 18) * 3)]).toEqual([1, 2, 1]);
    // The 16×16 grid of perf-anchors' 32×32 shape: token 17 is row 1, column 1.
    expect([...tinyImageIds(16).subarray((256 + 17) * 3, (256 + 18) * 3)]).toEqual([1, 1, 1]);
  });

  it("runs on onnxruntime with the right shape, matching the float64 interpreter", async () => {
    const { g, velocity } = build();
    expect(velocity.shape).toEqual([B, N, 12]);
    const f = feeds(1);
    const [ref] = evaluate(g, f, [velocity]);
    const session = await compile(g, { outputs: { v: velocity } });
    try {
      const v = (await session.run(f)).v as Float32Array;
      expect(v.length).toBe(B * N * 12);
      let num = 0;
      let den = 0;
      for (let i = 0; i < v.length; i++) {
        expect(Number.isFinite(v[i]!)).toBe(true);
        num += (v[i]! - ref![i]!) ** 2;
        den += ref![i]! ** 2;
      }
      expect(den).toBeGreaterThan(0);
      expect(Math.sqrt(num / den)).toBeLessThan(1e-4);
    } finally {
      await session.dispose();
    }
  }, 60_000);

  it("depends on the source image and on the words, and each sample only on its own inputs", () => {
    const { g, velocity } = build();
    const base = feeds(1);
    const [v0] = evaluate(g, base, [velocity]);
    const otherContext = { ...base, context: feeds(2).context };
    const [v1] = evaluate(g, otherContext, [velocity]);
    const otherWords = {
      ...base,
      text: feeds(1, [
        [5, 3, 0, 0],
        [4, 0, 0, 0],
      ]).text,
    };
    const [v2] = evaluate(g, otherWords, [velocity]);
    const diff = (a: ArrayLike<number>, b: ArrayLike<number>, from = 0, to = a.length) => {
      let m = 0;
      for (let i = from; i < to; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
      return m;
    };
    expect(diff(v0!, v1!)).toBeGreaterThan(1e-3);
    // Changing sample 0's first word changes sample 0 only.
    const half = N * 12;
    expect(diff(v0!, v2!, 0, half)).toBeGreaterThan(1e-3);
    expect(diff(v0!, v2!, half)).toBe(0);
  }, 60_000);
});
