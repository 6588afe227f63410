// The tiny FLUX graph the engine perf scripts time: the tiny model at the perf anchors' shape
// (adapters/tiny/perf/tiny-model.mjs: batch 4, 256 image + 256 context tokens, 20 words), weights fed as
// inputs, the loss mean(v²) and its gradient for every weight. Needs models, shapes and adapters/tiny built.
import * as path from "node:path";
import { repoRoot } from "./perf-util.mjs";

export const TOKENS = 256;

/**
 * Builds the graph with `engine` (the loaded engine module) and returns it with its feeds (deterministic):
 * `velocity` [B, 256, 12], `loss`, `gradients` (one per weight, in `weightNames` order), the transformer
 * `config` JSON and the tiny model's constants.
 */
export async function tinyFluxPerfGraph(engine, batch) {
  const { Graph, grad, ops } = engine;
  const dist = (p) => import(path.join(repoRoot, p, "dist/index.js"));
  const [{ parseFluxTransformerConfig }, { VOCABULARY }, tiny] = await Promise.all([
    dist("packages/models"),
    dist("packages/shapes"),
    dist("adapters/tiny"),
  ]).catch((e) => {
    throw new Error(`build models, shapes and adapters/tiny first (pnpm build): ${e.message}`);
  });
  const { buildTinyVelocity, InputWeights, initTinyWeights, TINY_TEXT_TOKENS, TINY_TOKEN_CHANNELS } = tiny;
  const configJson = tiny.TINY_TRANSFORMER_CONFIG_JSON;
  const V = VOCABULARY.length;
  const config = parseFluxTransformerConfig(configJson);
  const weights = initTinyWeights(config, { seed: 1, vocabSize: V, textTokens: TINY_TEXT_TOKENS });
  // PEFT-style zero tensors would give zero gradients downstream: every weight gets small non-zero values.
  for (const w of weights.values())
    for (let i = 0; i < w.length; i++) if (w[i] === 0) w[i] = ((i % 7) - 3) * 1e-3;

  let seed = 3;
  const rand = (n) =>
    Float32Array.from({ length: n }, () => {
      seed = (seed * 16807) % 2147483647;
      return (seed / 2147483647) * 2 - 1;
    });

  const g = new Graph("tiny-train");
  const iw = new InputWeights(g, "w/");
  const f = (n, s) => g.input(n, "float32", s);
  const inputs = {
    xt: f("xt", [batch, TOKENS, TINY_TOKEN_CHANNELS]),
    t: f("t", [batch]),
    context: f("context", [batch, TOKENS, TINY_TOKEN_CHANNELS]),
    text: f("text", [batch, TINY_TEXT_TOKENS, V]),
  };
  const velocity = buildTinyVelocity(g, config, iw, inputs).velocity;
  const loss = ops.reduceMean(ops.mul(velocity, velocity));
  const wrt = [...iw.inputs.values()];
  const gradients = grad(loss, wrt);
  const weightNames = wrt.map((t) => t.source.name.slice(2));

  const feeds = {};
  for (const t of g.inputs) {
    const name = t.source.name;
    if (name.startsWith("w/")) feeds[name] = weights.get(name.slice(2));
    else if (name === "t") feeds[name] = rand(batch).map(Math.abs);
    else if (name === "text") {
      const a = new Float32Array(t.size);
      for (let i = 0; i < batch * TINY_TEXT_TOKENS; i++)
        a[i * V + (i % 12 < 8 ? 2 + ((i * 7) % (V - 2)) : 0)] = 1;
      feeds[name] = a;
    } else feeds[name] = rand(t.size);
  }
  return {
    g,
    inputs,
    velocity,
    loss,
    gradients,
    weightNames,
    weights,
    feeds,
    rand,
    configJson,
    textTokens: TINY_TEXT_TOKENS,
    tokenChannels: TINY_TOKEN_CHANNELS,
    vocab: V,
  };
}
