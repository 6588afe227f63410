import { type Graph, ops, type Tensor } from "@edit-r1/engine";
import {
  buildKontextVelocity,
  type FluxTransformerConfig,
  type FluxTransformerOptions,
  type GraphWeights,
  graphWeights,
  imageTokenIds,
  type LoraParameter,
  type WeightSource,
} from "@edit-r1/models";
import { TinyAdapterError } from "./errors.js";
import { TINY_GRID } from "./tiny-config.js";

/** Symbolic inputs of one tiny velocity evaluation. */
export interface TinyVelocityInputs {
  /** Noisy target tokens x_t [B, 256, 12]. */
  xt: Tensor;
  /** σ per sample [B]. */
  t: Tensor;
  /** The source image's packed tokens [B, 256, 12] (Kontext context). */
  context: Tensor;
  /** One-hot word ids [B, T, V] (row 0 of the vocabulary is the pad token). */
  text: Tensor;
}

export const TEXT_EMBEDDING_KEY = "text_embedding.weight";
export const TEXT_POSITION_KEY = "text_position.weight";

/**
 * Position ids of the joint image sequence [2·grid², 3]: target tokens (0, r, c) then context tokens (1, r, c),
 * FLUX-Kontext's convention (models.md §2.3): the context shares the target's grid, only the first axis differs.
 */
export function tinyImageIds(grid: number = TINY_GRID): Float32Array {
  // The token grid is the latent grid halved by the 2×2 packing.
  const latent = 2 * grid;
  return Float32Array.from([...imageTokenIds(latent, latent, 0), ...imageTokenIds(latent, latent, 1)]);
}

/**
 * The tiny editor's velocity v(x_t, σ | source, instruction) [B, N, 12] as a graph: the FLUX transformer with
 * the source tokens appended after the noisy ones (Kontext), output cut back to the noisy tokens. N is the
 * square grid of `inputs.xt` (64 for the adapter's 16×16 images; perf runs the 256-token anchor shape).
 *
 * The "text encoder" is a word embedding plus a learned position embedding (FLUX gives text tokens no rotary
 * position, and word order matters: "replace the red circle with a square"), and the pooled vector is the
 * mean embedding of the non-pad words, standing in for CLIP's pooled output.
 */
export function buildTinyVelocity(
  g: Graph,
  config: FluxTransformerConfig,
  weights: WeightSource | GraphWeights,
  inputs: TinyVelocityInputs,
  options: FluxTransformerOptions = {},
): { velocity: Tensor; lora: LoraParameter[] } {
  if (config.pooledProjectionDim !== config.jointAttentionDim) {
    throw new TinyAdapterError(
      `tiny model config: pooled_projection_dim (${config.pooledProjectionDim}) must equal joint_attention_dim ` +
        `(${config.jointAttentionDim}), since the pooled vector is the mean word embedding; fix config.json.`,
    );
  }
  const bound = graphWeights(g, weights, options.dtype === undefined ? {} : { dtype: options.dtype });
  const [batch, textTokens, vocab] = inputs.text.shape as [number, number, number];
  const imageTokens = inputs.xt.shape[1]!;
  const grid = Math.round(Math.sqrt(imageTokens));
  if (grid * grid !== imageTokens) {
    throw new TinyAdapterError(`tiny velocity: ${imageTokens} image tokens do not form a square grid.`);
  }
  const width = config.jointAttentionDim;
  const { encoderHiddenStates, pooled } = g.scope("text_encoder", () => {
    const table = bound.get(TEXT_EMBEDDING_KEY, [vocab, width]);
    const positions = bound.get(TEXT_POSITION_KEY, [textTokens, width]);
    // The one-hot rows in the compute dtype (exact in any float dtype); a no-op in float32.
    const text = ops.cast(inputs.text, bound.dtype);
    const words = ops.matmul(text, table);
    // 1 for a word, 0 for padding: the pad id's one-hot column.
    const mask = ops.sub(1, ops.slice(text, [0], [1], [2]));
    const count = ops.maximum(ops.reduceSum(mask, [1], true), 1);
    const mean = ops.div(ops.reduceSum(ops.mul(words, mask), [1], true), count);
    return {
      encoderHiddenStates: ops.add(words, positions),
      pooled: ops.reshape(mean, [batch, width]),
    };
  });
  // FLUX-Kontext's velocity: the source tokens follow the noisy ones on the target's grid (position index 1),
  // and only the noisy tokens' prediction is kept.
  const latentGrid = [2 * grid, 2 * grid] as const;
  return buildKontextVelocity(
    g,
    { config, weights: bound },
    { latents: inputs.xt, context: inputs.context, text: encoderHiddenStates, pooled, timestep: inputs.t },
    { ...options, targetGrid: latentGrid, contextGrid: latentGrid },
  );
}
