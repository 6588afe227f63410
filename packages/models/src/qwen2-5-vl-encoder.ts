import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import { inScope, linear, type ModuleContext, mergeHeads, moduleContext, splitHeads } from "./layers.js";
import type { Qwen25VLConfig } from "./qwen2-5-vl-config.js";
import type { Qwen25VLImageGrid } from "./qwen2-5-vl-rope-index.js";
import {
  gatedMlp,
  inverseFrequencies,
  MASKED,
  qwenRmsNorm,
  visionForward,
  visionKeyPrefix,
} from "./qwen2-5-vl-vision.js";
import { WeightError, type WeightSource } from "./weight-source.js";

/** Symbolic inputs of one Qwen2.5-VL encoder pass (transformers argument names in the comments). */
export interface Qwen25VLEncoderInputs {
  /** `input_ids` [B, L] int64, each image as `<|vision_start|>`, t·h·w/merge² `<|image_pad|>`, `<|vision_end|>`. */
  inputIds: Tensor;
  /** `pixel_values` [P, 1176] of all images of the batch in order; omit for text only. */
  pixelValues?: Tensor | undefined;
  /** `image_grid_thw` (static): one (t, h, w) per image, all rows' images in order. */
  imageGrids: readonly Qwen25VLImageGrid[];
  /**
   * M-RoPE positions [3, B, L] row-major (t rows, then h, then w): from `qwen25VLRopeIndexBatch`, baked into
   * the graph as cos/sin tables, or an int64/int32 graph input of that shape (tables computed in the graph).
   */
  positionIds: Int32Array | Tensor;
  /**
   * `attention_mask` [B, L] (1 = token, 0 = padding), any numeric dtype; omit when no row is padded. Padded
   * keys are masked out of every real token's attention; padded rows attend to the real tokens before them
   * and to themselves, so their states are finite garbage (transformers' are other garbage): drop them.
   * Right padding needs no mask at all (the model is causal); left padding does, with positions from
   * `qwen25VLRopeIndexBatch` given the same mask.
   */
  attentionMask?: Tensor | undefined;
}

export interface Qwen25VLEncoderOptions {
  /** Compute dtype; bf16/fp16 checkpoints are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /**
   * Key prefixes: the Qwen checkpoints' `{visual: "visual.", text: "model."}` or transformers ≥ 4.52's
   * `{visual: "model.visual.", text: "model.language_model."}`; found in the weights when omitted.
   */
  keyPrefixes?: { visual: string; text: string };
  /** Module-path prefix of the nodes. */
  scope?: string;
  /**
   * Also apply `lm_head` at one token per row and return its logits: "last" (position L − 1, the answer
   * position of a left-aligned prompt with no right padding), or an int64/int32 [B] graph input holding each
   * row's position (right-padded rows). Only those rows go through the [vocab, hidden] matmul.
   */
  logitsAt?: "last" | Tensor | undefined;
  /**
   * Key of the output embedding (default "lm_head.weight"); when the weights lack it and the config ties the
   * embeddings (`tie_word_embeddings`, Qwen2.5-VL-3B), the input embedding table is used.
   */
  lmHeadKey?: string;
}

export interface Qwen25VLEncoderOutput {
  /** `hidden_states[-1]` [B, L, hidden]: the last decoder layer's output after the final RMSNorm. */
  lastHiddenState: Tensor;
  /** The vision tower's output [P / merge², hidden] when `pixelValues` is given. */
  imageEmbeds?: Tensor | undefined;
  /** `lm_head(hidden_states[-1])` [B, vocab] in float32 at the positions of `logitsAt`, when asked. */
  logits?: Tensor | undefined;
}

/**
 * transformers' `Qwen2_5_VLForConditionalGeneration(input_ids, attention_mask, pixel_values, image_grid_thw,
 * output_hidden_states=True).hidden_states[-1]` as a graph: the vision tower (`buildQwen25VLVision`), its
 * embeddings scattered over the `<|image_pad|>` tokens in order, then the causal Qwen2 decoder (GQA with q/k/v
 * bias, M-RoPE in rotate-half form, SwiGLU) and the final RMSNorm; with `logitsAt`, `lm_head` at one position
 * per row (the next-token logits there). No KV cache or video.
 */
export function buildQwen25VLEncoder(
  g: Graph,
  config: Qwen25VLConfig,
  weights: WeightSource | GraphWeights,
  inputs: Qwen25VLEncoderInputs,
  options: Qwen25VLEncoderOptions = {},
): Qwen25VLEncoderOutput {
  const ctx = moduleContext(g, weights, options);
  const [batch, length] = checkInputs(inputs);
  const prefixes = options.keyPrefixes ?? {
    visual: inputs.pixelValues ? visionKeyPrefix(ctx.weights) : "visual.",
    text: textKeyPrefix(ctx.weights),
  };
  return inScope(g, options.scope, () => {
    const t = prefixes.text;
    const d = config.hiddenSize;
    const table = ctx.weights.get(`${t}embed_tokens.weight`, [config.vocabSize, d]);
    let h = g.scope(`${t}embed_tokens`, () => ops.gather(table, inputs.inputIds, 0));
    let imageEmbeds: Tensor | undefined;
    if (inputs.pixelValues) {
      imageEmbeds = visionForward(ctx, config, prefixes.visual, {
        pixelValues: inputs.pixelValues,
        imageGrids: inputs.imageGrids,
      });
      h = g.scope("scatter_image_embeds", () =>
        scatterImageEmbeds(inputs.inputIds, h, imageEmbeds!, config.imageTokenId),
      );
    }
    const rope = g.scope(`${t}rotary_emb`, () => mropeTables(g, config, inputs.positionIds, batch, length));
    const mask = g.scope("causal_mask", () => causalMask(g, length, inputs.attentionMask));
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const name = `${t}layers.${i}`;
      h = g.scope(name, () => decoderLayer(ctx, config, name, h, rope, mask));
    }
    const lastHiddenState = qwenRmsNorm(ctx, `${t}norm`, h, config.rmsNormEps);
    if (options.logitsAt === undefined) return { lastHiddenState, imageEmbeds };
    const logits = g.scope("lm_head", () => {
      const rows = pickRows(lastHiddenState, options.logitsAt!);
      const key = options.lmHeadKey ?? "lm_head.weight";
      let w: Tensor;
      if (ctx.weights.has(key) || !config.tieWordEmbeddings) {
        w = ctx.weights.get(key, [config.vocabSize, d]);
      } else {
        w = table;
      }
      return ops.cast(nn.linear(rows, w), "float32");
    });
    return { lastHiddenState, imageEmbeds, logits };
  });
}

/** hidden [B, L, d] → [B, d]: row b at position L − 1 ("last") or at `positions[b]`. */
function pickRows(hidden: Tensor, at: "last" | Tensor): Tensor {
  const g = hidden.graph;
  const [batch, length, d] = hidden.shape as [number, number, number];
  if (at === "last") return ops.reshape(ops.slice(hidden, [length - 1], [length], [1]), [batch, d]);
  if (at.rank !== 1 || at.shape[0] !== batch || (at.dtype !== "int64" && at.dtype !== "int32")) {
    throw new GraphError(
      `buildQwen25VLEncoder: logitsAt must be an int64 [${batch}] tensor of positions, got ${at.dtype} ${fmt(at.shape)}`,
    );
  }
  const offsets = g.constant(
    BigInt64Array.from({ length: batch }, (_, b) => BigInt(b * length)),
    [batch],
    "int64",
  );
  const flat = ops.reshape(hidden, [batch * length, d]);
  return ops.gather(flat, ops.add(ops.cast(at, "int64"), offsets), 0);
}

/**
 * `inputs_embeds.masked_scatter(input_ids == image_token_id, image_embeds)`: the k-th image token of the
 * batch (row-major) takes row k of the image embeddings. k comes from an inclusive prefix sum over the flat
 * token mask (log-step shifted adds), so the ids can change between runs; more image tokens than rows fail
 * in the Gather at run time.
 */
function scatterImageEmbeds(ids: Tensor, embeds: Tensor, image: Tensor, imageTokenId: number): Tensor {
  const g = ids.graph;
  const [batch, length] = ids.shape as [number, number];
  const n = batch * length;
  const isImage = ops.equal(ops.cast(ids, "int64"), g.constant(imageTokenId, [], "int64"));
  let count = ops.reshape(ops.cast(isImage, "int64"), [n]);
  for (let shift = 1; shift < n; shift *= 2) {
    count = ops.add(count, nn.pad(ops.slice(count, [0], [n - shift], [0]), [shift, 0]));
  }
  const index = ops.where(
    ops.reshape(isImage, [batch, length]),
    ops.sub(ops.reshape(count, [batch, length]), 1),
    g.constant(0, [], "int64"),
  );
  const gathered = ops.gather(ops.cast(image, embeds.dtype), index, 0);
  return ops.where(ops.reshape(isImage, [batch, length, 1]), gathered, embeds);
}

/**
 * M-RoPE cos/sin [B, 1, L, head_dim] (rotate-half layout): frequency j < head_dim/2 rotates by the t, h or w
 * position as mrope_section assigns it, angles as one fp32 product like transformers' float32 matmul.
 */
function mropeTables(
  g: Graph,
  config: Qwen25VLConfig,
  positions: Int32Array | Tensor,
  batch: number,
  length: number,
): { cos: Tensor; sin: Tensor } {
  const hd = config.headDim;
  const half = hd / 2;
  const inv = inverseFrequencies(hd, config.ropeTheta);
  const [s0, s1] = config.mropeSection;
  const axisOf = (j: number) => (j < s0 ? 0 : j < s0 + s1 ? 1 : 2);
  const shape = [batch, 1, length, hd];
  if (positions instanceof Int32Array) {
    const cos = new Float32Array(batch * length * hd);
    const sin = new Float32Array(batch * length * hd);
    for (let b = 0; b < batch; b++) {
      for (let l = 0; l < length; l++) {
        const at = (b * length + l) * hd;
        for (let j = 0; j < half; j++) {
          const angle = Math.fround(positions[(axisOf(j) * batch + b) * length + l]! * inv[j]!);
          cos[at + j] = cos[at + j + half] = Math.cos(angle);
          sin[at + j] = sin[at + j + half] = Math.sin(angle);
        }
      }
    }
    return { cos: g.constant(cos, shape), sin: g.constant(sin, shape) };
  }
  // In the graph: Σ_axis position_axis · (inv where the axis owns the frequency, else 0) adds exact zeros.
  const pos = ops.cast(positions, "float32");
  let angles: Tensor | undefined;
  for (let axis = 0; axis < 3; axis++) {
    const f = Float32Array.from(inv, (v, j) => (axisOf(j) === axis ? v : 0));
    const p = ops.reshape(ops.slice(pos, [axis], [axis + 1], [0]), [batch, length, 1]);
    const term = ops.mul(p, g.constant(f, [1, 1, half]));
    angles = angles ? ops.add(angles, term) : term;
  }
  const full = ops.reshape(ops.concat([angles!, angles!], 2), shape);
  return { cos: ops.cos(full), sin: ops.sin(full) };
}

/**
 * Additive mask [1 or B, 1, L, L]: causal, and with a padding mask, padded keys hidden from every other
 * query (a padded query keeps itself, so no row is empty).
 */
function causalMask(g: Graph, length: number, attentionMask: Tensor | undefined): Tensor {
  const causal = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) causal[i * length + j] = MASKED;
  const mask = g.constant(causal, [1, 1, length, length]);
  if (!attentionMask) return mask;
  const batch = attentionMask.shape[0]!;
  const eye = new Float32Array(length * length);
  for (let i = 0; i < length; i++) eye[i * length + i] = 1;
  // A key is visible when it is a token, or when it is the query itself.
  const keys = ops.maximum(
    ops.reshape(ops.cast(attentionMask, "float32"), [batch, 1, 1, length]),
    g.constant(eye, [1, 1, length, length]),
  );
  return ops.where(ops.greater(keys, 0.5), mask, MASKED);
}

function decoderLayer(
  ctx: ModuleContext,
  config: Qwen25VLConfig,
  name: string,
  h: Tensor,
  rope: { cos: Tensor; sin: Tensor },
  mask: Tensor,
): Tensor {
  const d = config.hiddenSize;
  const hd = config.headDim;
  const heads = config.numAttentionHeads;
  const kvHeads = config.numKeyValueHeads;
  const a = `${name}.self_attn`;
  const x = qwenRmsNorm(ctx, `${name}.input_layernorm`, h, config.rmsNormEps);
  const rotate = (t: Tensor) => nn.applyRotary(t, rope.cos, rope.sin, false);
  const q = rotate(splitHeads(ctx, linear(ctx, `${a}.q_proj`, x, heads * hd), { heads, headDim: hd }));
  const k = rotate(
    splitHeads(ctx, linear(ctx, `${a}.k_proj`, x, kvHeads * hd), { heads: kvHeads, headDim: hd }),
  );
  const v = splitHeads(ctx, linear(ctx, `${a}.v_proj`, x, kvHeads * hd), { heads: kvHeads, headDim: hd });
  const attn = nn.scaledDotProductAttention(q, repeatKv(k, heads), repeatKv(v, heads), { mask });
  const h1 = ops.add(h, linear(ctx, `${a}.o_proj`, mergeHeads(attn), d, false));
  const y = qwenRmsNorm(ctx, `${name}.post_attention_layernorm`, h1, config.rmsNormEps);
  return ops.add(h1, gatedMlp(ctx, `${name}.mlp`, y, config.intermediateSize, d, config.hiddenAct, false));
}

/** [B, kv, L, D] → [B, heads, L, D], each key/value head shared by heads/kv consecutive query heads. */
function repeatKv(x: Tensor, heads: number): Tensor {
  const [b, kv, l, dim] = x.shape as [number, number, number, number];
  if (kv === heads) return x;
  const rep = heads / kv;
  return ops.reshape(ops.expand(ops.reshape(x, [b, kv, 1, l, dim]), [b, kv, rep, l, dim]), [
    b,
    heads,
    l,
    dim,
  ]);
}

/** The prefix under which the weights hold the text model: "model." or "model.language_model.". */
function textKeyPrefix(weights: GraphWeights): string {
  const candidates = ["model.language_model.", "model.", "language_model."];
  const found = candidates.find((p) => weights.has(`${p}embed_tokens.weight`));
  if (found === undefined) {
    throw new WeightError(
      `${weights.source.description}: no Qwen2.5-VL text model: none of ` +
        `${candidates.map((p) => `"${p}embed_tokens.weight"`).join(", ")} is present ` +
        "(pass keyPrefixes for another layout)",
      "model.embed_tokens.weight",
    );
  }
  return found;
}

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

function checkInputs(inputs: Qwen25VLEncoderInputs): [number, number] {
  const ids = inputs.inputIds;
  if (ids.rank !== 2 || (ids.dtype !== "int64" && ids.dtype !== "int32")) {
    throw new GraphError(
      `buildQwen25VLEncoder: input_ids must be int64 [B, L], got ${ids.dtype} ${fmt(ids.shape)}`,
    );
  }
  const [batch, length] = ids.shape as [number, number];
  const pos = inputs.positionIds;
  const posShape = pos instanceof Int32Array ? undefined : pos.shape;
  const posSize = pos instanceof Int32Array ? pos.length : pos.shape.reduce((a, b) => a * b, 1);
  if (posSize !== 3 * batch * length || (posShape && (posShape.length !== 3 || posShape[0] !== 3))) {
    throw new GraphError(
      `buildQwen25VLEncoder: position ids must be [3, ${batch}, ${length}] (t, h, w rows), got ` +
        (posShape ? fmt(posShape) : `${posSize} values`),
    );
  }
  if (!(pos instanceof Int32Array) && pos.dtype !== "int64" && pos.dtype !== "int32") {
    throw new GraphError(`buildQwen25VLEncoder: position ids must be int64 or int32, got ${pos.dtype}`);
  }
  const m = inputs.attentionMask;
  if (m && (m.rank !== 2 || m.shape[0] !== batch || m.shape[1] !== length)) {
    throw new GraphError(
      `buildQwen25VLEncoder: attention_mask must be [${batch}, ${length}], got ${fmt(m.shape)}`,
    );
  }
  if (!inputs.pixelValues && inputs.imageGrids.length > 0) {
    throw new GraphError("buildQwen25VLEncoder: image grids given without pixel_values");
  }
  return [batch, length];
}
