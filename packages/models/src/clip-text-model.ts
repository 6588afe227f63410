import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { ClipTextConfig } from "./clip-text-config.js";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import { inScope, linear, type ModuleContext, mergeHeads, moduleContext, splitHeads } from "./layers.js";
import type { WeightSource } from "./weight-source.js";

/** Symbolic inputs of a CLIP text forward pass. */
export interface ClipTextInputs {
  /** `input_ids` [B, L] int64, L ≤ max_position_embeddings (FLUX pads to 77). */
  inputIds: Tensor;
  /** [B] int64: the position each row is pooled at (see `clipPoolingPositions`). */
  eosPositions: Tensor;
}

export interface ClipTextOptions {
  /** Compute dtype; fp16 checkpoints (FLUX ships CLIP in fp16) are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /** Prefix of every checkpoint key; "text_model." for transformers' CLIPTextModel (the default). */
  keyPrefix?: string;
  /** Module-path prefix of the nodes. */
  scope?: string;
}

export interface ClipTextOutput {
  /** `last_hidden_state` [B, L, hidden], after the final layer norm. */
  lastHiddenState: Tensor;
  /** `pooler_output` [B, hidden]: the final-layer-norm state at each row's pooling position. */
  pooled: Tensor;
}

// What transformers adds for masked attention positions; finite so that fp32 sums never meet inf − inf.
const MASKED = -1e9;

/**
 * transformers' CLIPTextModel forward as a graph (token + learned position embeddings, pre-LN causal
 * transformer, final LayerNorm, pooled output), from weights with the transformers key layout.
 * No attention mask: the FLUX pipelines pass none, so padding tokens are attended to (causally) as usual.
 */
export function buildClipTextModel(
  g: Graph,
  config: ClipTextConfig,
  weights: WeightSource | GraphWeights,
  inputs: ClipTextInputs,
  options: ClipTextOptions = {},
): ClipTextOutput {
  const ctx = moduleContext(g, weights, options);
  const bound = ctx.weights;
  const p = options.keyPrefix ?? "text_model.";
  const [batch, length] = checkInputs(config, inputs);
  const build = (): ClipTextOutput => {
    const d = config.hiddenSize;
    const tok = bound.get(`${p}embeddings.token_embedding.weight`, [config.vocabSize, d]);
    const pos = bound.get(`${p}embeddings.position_embedding.weight`, [config.maxPositionEmbeddings, d]);
    const positions = ops.slice(pos, [0], [length], [0]);
    let h = ops.add(ops.gather(tok, inputs.inputIds, 0), ops.reshape(positions, [1, length, d]));
    const mask = causalMask(g, length);
    for (let i = 0; i < config.numHiddenLayers; i++) {
      h = g.scope(`${p}encoder.layers.${i}`, () =>
        encoderLayer(ctx, config, `${p}encoder.layers.${i}`, h, mask),
      );
    }
    const last = layerNorm(ctx, `${p}final_layer_norm`, h, config);
    const flat = ops.reshape(last, [batch * length, d]);
    const rowStart = g.constant(
      BigInt64Array.from({ length: batch }, (_, b) => BigInt(b * length)),
      [batch],
      "int64",
    );
    const pooled = ops.gather(flat, ops.add(ops.cast(inputs.eosPositions, "int64"), rowStart), 0);
    return { lastHiddenState: last, pooled };
  };
  return inScope(g, options.scope, build);
}

/** Creates the graph inputs `input_ids` [B, L] and `eos_positions` [B] (int64) for `buildClipTextModel`. */
export function clipTextInputs(
  g: Graph,
  sizes: { batch: number; length: number },
  namePrefix = "",
): ClipTextInputs {
  return {
    inputIds: g.input(`${namePrefix}input_ids`, "int64", [sizes.batch, sizes.length]),
    eosPositions: g.input(`${namePrefix}eos_positions`, "int64", [sizes.batch]),
  };
}

/**
 * Where transformers pools each row of ids: the first argmax of the ids when the config's eos_token_id is 2
 * (its legacy rule, which the OpenAI CLIP configs trigger), else the first position holding eos_token_id.
 * A row without that token pools at 0, as torch's argmax of an all-false row does.
 */
export function clipPoolingPositions(
  rows: readonly ArrayLike<number>[],
  config: ClipTextConfig,
): BigInt64Array {
  return BigInt64Array.from(rows, (ids) => {
    let best = 0;
    for (let i = 0; i < ids.length; i++) {
      if (config.eosTokenId === 2) {
        if (ids[i]! > ids[best]!) best = i;
      } else if (ids[i] === config.eosTokenId) return BigInt(i);
    }
    return BigInt(best);
  });
}

function causalMask(g: Graph, length: number): Tensor {
  const m = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) m[i * length + j] = MASKED;
  return g.constant(m, [1, 1, length, length]);
}

function encoderLayer(
  ctx: ModuleContext,
  config: ClipTextConfig,
  name: string,
  h: Tensor,
  mask: Tensor,
): Tensor {
  const d = config.hiddenSize;
  const heads = config.numAttentionHeads;
  const split = (x: Tensor) => splitHeads(ctx, x, { heads, headDim: d / heads });
  const x = layerNorm(ctx, `${name}.layer_norm1`, h, config);
  const a = `${name}.self_attn`;
  const q = split(linear(ctx, `${a}.q_proj`, x, d));
  const k = split(linear(ctx, `${a}.k_proj`, x, d));
  const v = split(linear(ctx, `${a}.v_proj`, x, d));
  const attn = nn.scaledDotProductAttention(q, k, v, { mask });
  const merged = mergeHeads(attn);
  const h1 = ops.add(h, linear(ctx, `${a}.out_proj`, merged, d));
  const y = layerNorm(ctx, `${name}.layer_norm2`, h1, config);
  const act = activation(linear(ctx, `${name}.mlp.fc1`, y, config.intermediateSize), config.hiddenAct);
  return ops.add(h1, linear(ctx, `${name}.mlp.fc2`, act, d));
}

/** quick_gelu is x·σ(1.702x), OpenAI's approximation that CLIP was trained with. */
function activation(x: Tensor, kind: ClipTextConfig["hiddenAct"]): Tensor {
  return kind === "quick_gelu" ? ops.mul(x, ops.sigmoid(ops.mul(x, 1.702))) : nn.gelu(x);
}

// LayerNorm statistics in fp32 even under fp16 compute, as PyTorch's kernels keep them.
function layerNorm(ctx: ModuleContext, name: string, x: Tensor, config: ClipTextConfig): Tensor {
  const d = config.hiddenSize;
  const weight = ctx.weights.get(`${name}.weight`, [d]);
  const bias = ctx.weights.get(`${name}.bias`, [d]);
  const y = nn.layerNorm(ops.cast(x, "float32"), {
    weight: ops.cast(weight, "float32"),
    bias: ops.cast(bias, "float32"),
    eps: config.layerNormEps,
  });
  return ops.cast(y, x.dtype);
}

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

function checkInputs(config: ClipTextConfig, inputs: ClipTextInputs): [number, number] {
  const ids = inputs.inputIds;
  if (ids.rank !== 2 || (ids.dtype !== "int64" && ids.dtype !== "int32")) {
    throw new GraphError(
      `buildClipTextModel: input_ids must be int64 [B, L], got ${ids.dtype} ${fmt(ids.shape)}`,
    );
  }
  const [batch, length] = ids.shape as [number, number];
  if (length > config.maxPositionEmbeddings) {
    throw new GraphError(
      `buildClipTextModel: input_ids has ${length} positions but the model has ${config.maxPositionEmbeddings}; ` +
        "tokenize with max_length = max_position_embeddings",
    );
  }
  const e = inputs.eosPositions;
  if (e.rank !== 1 || e.shape[0] !== batch || (e.dtype !== "int64" && e.dtype !== "int32")) {
    throw new GraphError(
      `buildClipTextModel: eos_positions must be int64 [${batch}], got ${e.dtype} ${fmt(e.shape)}`,
    );
  }
  return [batch, length];
}
