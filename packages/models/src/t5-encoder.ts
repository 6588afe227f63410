import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import { inScope, linear, type ModuleContext, mergeHeads, moduleContext, splitHeads } from "./layers.js";
import type { T5EncoderConfig } from "./t5-encoder-config.js";
import { WeightError, type WeightSource } from "./weight-source.js";

export interface T5EncoderOptions {
  /** Compute dtype; bf16 checkpoints (FLUX ships T5 in bf16) are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /** Module-path prefix of the nodes. */
  scope?: string;
  /**
   * `attention_mask` [B, L] (any numeric dtype): 1 = token (EOS included), 0 = padding, as transformers'
   * T5EncoderModel takes it; padded keys are dropped from every query's attention (the padded positions still
   * get states). Omit it for FLUX, whose pipeline calls T5 without a mask, so pads take part.
   */
  attentionMask?: Tensor;
}

// Added to the scores of padded keys; exp(−1e9 + s) is exactly 0 in fp32, as transformers' finfo.min is.
const MASKED = -1e9;

/**
 * transformers' T5EncoderModel forward as a graph: token embedding, pre-RMS-norm blocks of unscaled self-
 * attention with a shared bidirectional relative-position bias (from block 0) and a (gated) feed-forward,
 * then the final RMS norm. Keys as transformers saves them (`shared.weight` or `encoder.embed_tokens.weight`,
 * `encoder.block.{i}.layer.{0,1}.…`, `encoder.final_layer_norm.weight`).
 *
 * `inputIds` is [B, L] int64. Without `options.attentionMask` (as FLUX calls it) padding tokens take part;
 * with it, padded keys are masked out. Returns `last_hidden_state` [B, L, d_model].
 */
export function buildT5Encoder(
  g: Graph,
  config: T5EncoderConfig,
  weights: WeightSource | GraphWeights,
  inputIds: Tensor,
  options: T5EncoderOptions = {},
): Tensor {
  const ctx = moduleContext(g, weights, options);
  const bound = ctx.weights;
  if (inputIds.rank !== 2 || (inputIds.dtype !== "int64" && inputIds.dtype !== "int32")) {
    throw new GraphError(
      `buildT5Encoder: input_ids must be int64 [B, L], got ${inputIds.dtype} [${inputIds.shape.join(",")}]`,
    );
  }
  const [batch, length] = inputIds.shape as [number, number];
  const mask = options.attentionMask;
  if (mask && (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== length)) {
    throw new GraphError(
      `buildT5Encoder: attention_mask must be [${batch}, ${length}] like input_ids, got [${mask.shape.join(",")}]`,
    );
  }
  const build = () => {
    const embedKey = ["shared.weight", "encoder.embed_tokens.weight"].find((k) => bound.has(k));
    if (!embedKey) {
      throw new WeightError(
        `${bound.source.description}: neither "shared.weight" nor "encoder.embed_tokens.weight" is present; ` +
          "a T5EncoderModel checkpoint stores its token embedding under one of them",
        "shared.weight",
      );
    }
    const embed = bound.get(embedKey, [config.vocabSize, config.dModel]);
    let h = ops.gather(embed, inputIds, 0);
    const positions = g.scope("position_bias", () => positionBias(ctx, config, length));
    const bias = mask ? g.scope("attention_mask", () => maskedBias(positions, mask)) : positions;
    for (let i = 0; i < config.numLayers; i++) {
      h = g.scope(`encoder.block.${i}`, () => block(ctx, config, `encoder.block.${i}`, h, bias));
    }
    return rmsNorm(ctx, "encoder.final_layer_norm", h, config);
  };
  return inScope(g, options.scope, build);
}

/**
 * T5's bidirectional relative-position bucket of every (query i, key j) pair, row-major [L·L], for
 * relative position j − i: half the buckets for each sign, exact below half of them, then logarithmic up
 * to `maxDistance`. The logarithmic part is rounded through float32 step by step as torch computes it,
 * so bucket edges land where transformers puts them.
 */
export function t5RelativePositionBuckets(
  length: number,
  numBuckets: number,
  maxDistance: number,
): Int32Array {
  const f = Math.fround;
  const half = numBuckets / 2;
  const maxExact = half / 2;
  const logRange = f(Math.log(maxDistance / maxExact));
  const out = new Int32Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let j = 0; j < length; j++) {
      const rel = j - i;
      const n = Math.abs(rel);
      let bucket = rel > 0 ? half : 0;
      if (n < maxExact) bucket += n;
      else {
        const large =
          maxExact + Math.trunc(f(f(f(Math.log(f(n / maxExact))) / logRange) * (half - maxExact)));
        bucket += Math.min(large, half - 1);
      }
      out[i * length + j] = bucket;
    }
  }
  return out;
}

/** The additive attention bias [1, heads, L, L] from block 0's relative_attention_bias [buckets, heads]. */
function positionBias(ctx: ModuleContext, config: T5EncoderConfig, length: number): Tensor {
  const g = ctx.weights.graph;
  const table = ctx.weights.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [
    config.relativeAttentionNumBuckets,
    config.numHeads,
  ]);
  const buckets = t5RelativePositionBuckets(
    length,
    config.relativeAttentionNumBuckets,
    config.relativeAttentionMaxDistance,
  );
  const idx = g.constant(
    BigInt64Array.from(buckets, (b) => BigInt(b)),
    [length, length],
    "int64",
  );
  const values = ops.gather(table, idx, 0); // [L, L, heads]
  return ops.reshape(ops.transpose(values, [2, 0, 1]), [1, config.numHeads, length, length]);
}

/**
 * The position bias [1, H, L, L] plus the key mask [B, 1, 1, L] (0 for tokens, −1e9 for padding), as
 * transformers adds the extended attention mask to the position bias: [B, H, L, L].
 */
function maskedBias(positions: Tensor, mask: Tensor): Tensor {
  const [batch, length] = mask.shape as [number, number];
  const m = ops.cast(mask, "float32");
  const additive = ops.reshape(ops.mul(ops.sub(1, m), MASKED), [batch, 1, 1, length]);
  return ops.add(positions, ops.cast(additive, positions.dtype));
}

function block(ctx: ModuleContext, config: T5EncoderConfig, name: string, h: Tensor, bias: Tensor): Tensor {
  const inner = config.numHeads * config.dKv;
  const a = `${name}.layer.0.SelfAttention`;
  const x = rmsNorm(ctx, `${name}.layer.0.layer_norm`, h, config);
  const split = (t: Tensor) => splitHeads(ctx, t, { heads: config.numHeads, headDim: config.dKv });
  const q = split(linear(ctx, `${a}.q`, x, inner, false));
  const k = split(linear(ctx, `${a}.k`, x, inner, false));
  const v = split(linear(ctx, `${a}.v`, x, inner, false));
  // T5 folds the 1/√d scaling into its initialisation, so the scores are unscaled.
  const attn = nn.scaledDotProductAttention(q, k, v, { mask: bias, scale: 1 });
  const merged = mergeHeads(attn);
  const h1 = ops.add(h, linear(ctx, `${a}.o`, merged, config.dModel, false));
  const y = rmsNorm(ctx, `${name}.layer.1.layer_norm`, h1, config);
  return ops.add(h1, feedForward(ctx, config, `${name}.layer.1.DenseReluDense`, y));
}

function feedForward(ctx: ModuleContext, config: T5EncoderConfig, name: string, x: Tensor): Tensor {
  const { dFf, dModel } = config;
  // transformers maps gated-gelu to "gelu_new", the tanh approximation; a plain "gelu" is the exact one.
  const act = (t: Tensor) =>
    config.feedForward === "gated-gelu"
      ? nn.gelu(t, "tanh")
      : config.feedForward === "gelu"
        ? nn.gelu(t)
        : ops.relu(t);
  const gated = config.feedForward.startsWith("gated-");
  const hidden = gated
    ? ops.mul(act(linear(ctx, `${name}.wi_0`, x, dFf, false)), linear(ctx, `${name}.wi_1`, x, dFf, false))
    : act(linear(ctx, `${name}.wi`, x, dFf, false));
  return linear(ctx, `${name}.wo`, hidden, dModel, false);
}

/** T5LayerNorm: x·rsqrt(mean(x²) + eps)·weight, no mean subtraction and no bias, statistics in fp32. */
function rmsNorm(ctx: ModuleContext, name: string, x: Tensor, config: T5EncoderConfig): Tensor {
  const weight = ctx.weights.get(`${name}.weight`, [config.dModel]);
  return nn.rmsNorm(x, { weight, eps: config.layerNormEpsilon });
}
