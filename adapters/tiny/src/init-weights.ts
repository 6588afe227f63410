import { Rng } from "@edit-r1/core";
import { Graph } from "@edit-r1/engine";
import type { FluxTransformerConfig } from "@edit-r1/models";
import { InputWeights } from "./input-weights.js";
import { TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS } from "./tiny-config.js";
import { buildTinyVelocity, TEXT_EMBEDDING_KEY, TEXT_POSITION_KEY } from "./tiny-velocity.js";

/** Every weight of the tiny model (key → shape), in build order, found by building the graph once. */
export function tinyWeightShapes(
  config: FluxTransformerConfig,
  vocabSize: number,
  textTokens: number,
): Map<string, readonly number[]> {
  const g = new Graph("tiny-weight-shapes");
  const weights = new InputWeights(g);
  const f = (name: string, shape: number[]) => g.input(name, "float32", shape);
  buildTinyVelocity(g, config, weights, {
    xt: f("xt", [1, TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS]),
    t: f("t", [1]),
    context: f("context", [1, TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS]),
    text: f("text", [1, textTokens, vocabSize]),
  });
  return weights.shapes;
}

/** The modulation Linears (adaLN): zero-initialised, so every block starts as the identity (DiT's adaLN-Zero). */
const MODULATION = /(^|\.)(norm1|norm1_context|norm|norm_out)\.linear\.weight$/;

/**
 * Fresh weights for pretraining, from a seed: Xavier-normal Linears, zero biases, unit RMSNorm scales,
 * adaLN-Zero modulation and a zero output projection (the untrained model predicts v = 0), N(0, 1) word
 * embeddings and N(0, 0.5²) position embeddings.
 */
export function initTinyWeights(
  config: FluxTransformerConfig,
  options: { seed: number; vocabSize: number; textTokens: number },
): Map<string, Float32Array> {
  const rng = new Rng(options.seed);
  const out = new Map<string, Float32Array>();
  for (const [key, shape] of tinyWeightShapes(config, options.vocabSize, options.textTokens)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    const normal = (std: number) => {
      for (let i = 0; i < n; i++) values[i] = rng.normal() * std;
    };
    if (key === TEXT_EMBEDDING_KEY) normal(1);
    else if (key === TEXT_POSITION_KEY) normal(0.5);
    else if (key.endsWith(".bias") || key === "proj_out.weight" || MODULATION.test(key)) {
      // zeros
    } else if (shape.length === 1) values.fill(1);
    else normal(Math.sqrt(2 / (shape[0]! + shape[1]!)));
    out.set(key, values);
  }
  return out;
}
