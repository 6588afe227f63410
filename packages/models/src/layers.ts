import { type Graph, nn, ops, type Tensor } from "@edit-r1/engine";
import type { RotaryTables } from "./embeddings.js";
import { type ComputeDType, type GraphWeights, graphWeights } from "./graph-weights.js";
import { type LoraOptions, LoraSet } from "./lora.js";
import type { WeightSource } from "./weight-source.js";

/**
 * The layers the model builders share, on top of the engine's `nn`: a Linear that finds its weights by
 * checkpoint key and, when its module is a LoRA target, becomes a LoRA linear with factor inputs named by PEFT
 * key; multi-head attention plumbing; and the pieces of the FLUX-family (MM-DiT) transformers — AdaLN
 * modulation, the GELU feed-forward, the double-stream block and the modulated output norm — which FLUX and
 * Qwen-Image share down to their diffusers key layout inside a block.
 */

/** What a module needs to find its weights and, when targeted, its LoRA factors. */
export interface ModuleContext {
  weights: GraphWeights;
  lora?: LoraSet | undefined;
}

/** A builder's weights bound to `g` in its compute dtype, plus the LoRA factors it creates when asked. */
export function moduleContext(
  g: Graph,
  weights: WeightSource | GraphWeights,
  options: { dtype?: ComputeDType | undefined; lora?: LoraOptions | undefined } = {},
): ModuleContext {
  const bound = graphWeights(g, weights, options.dtype === undefined ? {} : { dtype: options.dtype });
  return { weights: bound, lora: options.lora ? new LoraSet(g, options.lora) : undefined };
}

/** Runs `build` inside the module scope `scope` when one is given (a builder's `options.scope`). */
export function inScope<T>(g: Graph, scope: string | undefined, build: () => T): T {
  return scope ? g.scope(scope, build) : build();
}

/** y = x Wᵀ + b (+ scale·(x Aᵀ) Bᵀ when `name` is a LoRA target), weights `${name}.weight` [out, in] and `.bias`. */
export function linear(
  ctx: ModuleContext,
  name: string,
  x: Tensor,
  outFeatures: number,
  bias = true,
): Tensor {
  const inFeatures = x.shape[x.rank - 1]!;
  return x.graph.scope(name, () => {
    const w = ctx.weights.get(`${name}.weight`, [outFeatures, inFeatures]);
    const b = bias ? ctx.weights.get(`${name}.bias`, [outFeatures]) : undefined;
    const lora = ctx.lora?.factors(name, inFeatures, outFeatures);
    return lora ? nn.loraLinear(x, w, b, lora) : nn.linear(x, w, b);
  });
}

// ---- Precision ----------------------------------------------------------------------------------------

/**
 * Runs `fn` on x in float32 and casts back: diffusers (and PyTorch's LayerNorm kernels) keep normalisation
 * statistics and rotary products in fp32 under 16-bit compute.
 */
export function inFloat32(x: Tensor, fn: (x32: Tensor) => Tensor): Tensor {
  return ops.cast(fn(ops.cast(x, "float32")), x.dtype);
}

/** LayerNorm without affine parameters, statistics in fp32 (every FLUX / Qwen-Image norm outside attention). */
export function layerNorm(x: Tensor, eps: number): Tensor {
  return inFloat32(x, (y) => nn.layerNorm(y, { eps }));
}

// ---- Attention ----------------------------------------------------------------------------------------

/** Heads of a multi-head attention: how many, the width of each, and how many attend at a time. */
export interface HeadShape {
  heads: number;
  headDim: number;
  /**
   * Heads per attention chunk (the engine's `headChunk`): attention over that many heads at a time, so one
   * chunk's scores are alive instead of all heads'. Undefined: all heads at once.
   */
  headChunk?: number | undefined;
}

/** The heads of a transformer config with diffusers' `num_attention_heads` and `attention_head_dim`. */
export function headShape(config: { numAttentionHeads: number; attentionHeadDim: number }): HeadShape {
  return { heads: config.numAttentionHeads, headDim: config.attentionHeadDim };
}

/**
 * [B, L, heads·dim] → [B, heads, L, dim]. With `norm`, each head is RMS-normed with the weight `norm.key` [dim]
 * first (the q/k norms of FLUX and Qwen-Image).
 */
export function splitHeads(
  ctx: ModuleContext,
  x: Tensor,
  shape: HeadShape,
  norm?: { key: string; eps: number },
): Tensor {
  const [batch, length] = x.shape as [number, number];
  let h = ops.reshape(x, [batch, length, shape.heads, shape.headDim]);
  if (norm) h = nn.rmsNorm(h, { weight: ctx.weights.get(norm.key, [shape.headDim]), eps: norm.eps });
  return ops.transpose(h, [0, 2, 1, 3]);
}

/** [B, heads, L, dim] → [B, L, heads·dim]: the inverse of `splitHeads`. */
export function mergeHeads(x: Tensor): Tensor {
  const [batch, nHeads, length, dim] = x.shape as [number, number, number, number];
  return ops.reshape(ops.transpose(x, [0, 2, 1, 3]), [batch, length, nHeads * dim]);
}

/**
 * Attention over q/k/v [B, heads, L, dim] with rotary q and k (interleaved pairs, products in fp32), back to
 * [B, L, heads·dim]; `mask` is additive over the keys; `headChunk` heads at a time when given.
 */
export function ropeAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  rope: RotaryTables,
  mask?: Tensor,
  headChunk?: number,
): Tensor {
  const rotate = (t: Tensor) => inFloat32(t, (t32) => nn.applyRotary(t32, rope.cos, rope.sin, true));
  return mergeHeads(
    nn.scaledDotProductAttention(rotate(q), rotate(k), v, {
      ...(mask ? { mask } : {}),
      ...(headChunk !== undefined ? { headChunk } : {}),
    }),
  );
}

// ---- FLUX-family (MM-DiT) transformer pieces ------------------------------------------------------------

// FLUX and Qwen-Image use eps 1e-6 for every LayerNorm and for the q/k RMS norms.
const EPS = 1e-6;

/**
 * `Linear(SiLU(temb))` split into `count` chunks of [B, 1, width] (broadcast over tokens): the AdaLN
 * modulation parameters (shift, scale, gate, …) of a block. `tembAct` is SiLU(temb), computed once per model.
 */
export function modulation(
  ctx: ModuleContext,
  name: string,
  tembAct: Tensor,
  width: number,
  count: number,
): Tensor[] {
  const m = linear(ctx, name, tembAct, width * count);
  const batch = m.shape[0]!;
  return Array.from({ length: count }, (_, k) =>
    ops.reshape(ops.slice(m, [k * width], [(k + 1) * width], [1]), [batch, 1, width]),
  );
}

/** x·(1 + scale) + shift. */
export function modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor {
  return ops.add(ops.mul(x, ops.add(scale, 1)), shift);
}

/** GELU with PyTorch's tanh approximation, FLUX's and Qwen-Image's activation. */
export function geluTanh(x: Tensor): Tensor {
  return nn.gelu(x, "tanh");
}

/** diffusers' `FeedForward(dim, activation_fn="gelu-approximate")`: `${name}.net.0.proj` (×4) → GELU → `.net.2`. */
export function feedForward(ctx: ModuleContext, name: string, x: Tensor, inner: number): Tensor {
  const h = geluTanh(linear(ctx, `${name}.net.0.proj`, x, inner * 4));
  return linear(ctx, `${name}.net.2`, h, inner);
}

/**
 * diffusers' `AdaLayerNormContinuous` as `norm_out` of FLUX and Qwen-Image: LayerNorm modulated by
 * `${name}.linear`(SiLU(temb)), whose chunks come in the order (scale, shift), unlike every block's
 * (shift, scale, gate).
 */
export function adaLayerNormContinuous(ctx: ModuleContext, name: string, x: Tensor, tembAct: Tensor): Tensor {
  const [scale, shift] = modulation(ctx, `${name}.linear`, tembAct, x.shape[2]!, 2);
  return modulate(layerNorm(x, EPS), shift!, scale!);
}

/**
 * Qwen-Image-Edit-2511's `zero_cond_t`: the image stream's condition tokens are modulated with the embedding of
 * t = 0 while the target tokens (and the text stream) use the real t.
 */
export interface ConditionTemb {
  /** SiLU(temb(0)) [B, D]. */
  tembAct: Tensor;
  /** [1, N, 1]: 1 for a target token, 0 for a condition token. */
  isTarget: Tensor;
}

/**
 * The block's six image modulations with `zero_cond_t`: one Linear over SiLU(temb) of both timesteps (as
 * diffusers batches them), then each token takes its row: target tokens t, condition tokens 0.
 */
function perTokenModulation(
  ctx: ModuleContext,
  name: string,
  tembAct: Tensor,
  condition: ConditionTemb,
  width: number,
): Tensor[] {
  const batch = tembAct.shape[0]!;
  const both = modulation(ctx, name, ops.concat([tembAct, condition.tembAct], 0), width, 6);
  const notTarget = ops.sub(1, condition.isTarget);
  return both.map((m) => {
    const atT = ops.slice(m, [0], [batch], [0]);
    const atZero = ops.slice(m, [batch], [2 * batch], [0]);
    // Exact selection: each product is by 1 or 0.
    return ops.add(ops.mul(atT, condition.isTarget), ops.mul(atZero, notTarget));
  });
}

/** Module names (below the block's own name) that differ between FLUX's and Qwen-Image's double-stream blocks. */
export interface DoubleStreamKeys {
  /** The image stream's modulation Linear: FLUX `norm1.linear`, Qwen-Image `img_mod.1`. */
  imageModulation: string;
  /** The text stream's modulation Linear: FLUX `norm1_context.linear`, Qwen-Image `txt_mod.1`. */
  textModulation: string;
  /** The image stream's feed-forward: FLUX `ff`, Qwen-Image `img_mlp`. */
  imageMlp: string;
  /** The text stream's feed-forward: FLUX `ff_context`, Qwen-Image `txt_mlp`. */
  textMlp: string;
}

/**
 * One double-stream (MM-DiT) block: image stream x [B, N, D] and text stream c [B, L, D], each AdaLN-modulated
 * (two sets of shift, scale, gate per stream), attend jointly over [text, image] with per-head RMS-normed,
 * rotary q and k (attention keys `attn.to_q`… for the image, `attn.add_q_proj`… for the text), then each runs its
 * own feed-forward. FLUX's `FluxTransformerBlock` and Qwen-Image's `QwenImageTransformerBlock`; both updated
 * streams are returned.
 */
export function doubleStreamBlock(
  ctx: ModuleContext,
  heads: HeadShape,
  name: string,
  keys: DoubleStreamKeys,
  x: Tensor,
  c: Tensor,
  tembAct: Tensor,
  rope: RotaryTables,
  mask?: Tensor,
  conditionTemb?: ConditionTemb,
): [Tensor, Tensor] {
  return x.graph.scope(name, () => {
    const inner = x.shape[2]!;
    const textTokens = c.shape[1]!;
    const [shiftX, scaleX, gateX, shiftX2, scaleX2, gateX2] = conditionTemb
      ? perTokenModulation(ctx, `${name}.${keys.imageModulation}`, tembAct, conditionTemb, inner)
      : modulation(ctx, `${name}.${keys.imageModulation}`, tembAct, inner, 6);
    const [shiftC, scaleC, gateC, shiftC2, scaleC2, gateC2] = modulation(
      ctx,
      `${name}.${keys.textModulation}`,
      tembAct,
      inner,
      6,
    );
    const xn = modulate(layerNorm(x, EPS), shiftX!, scaleX!);
    const cn = modulate(layerNorm(c, EPS), shiftC!, scaleC!);

    const a = `${name}.attn`;
    const norm = (key: string | undefined) => (key ? { key: `${a}.${key}.weight`, eps: EPS } : undefined);
    // Text first, matching the [text, image] order of the joint sequence and of the rotary tables.
    const joint = (txtKey: string, imgKey: string, txtNorm?: string, imgNorm?: string) =>
      ops.concat(
        [
          splitHeads(ctx, linear(ctx, `${a}.${txtKey}`, cn, inner), heads, norm(txtNorm)),
          splitHeads(ctx, linear(ctx, `${a}.${imgKey}`, xn, inner), heads, norm(imgNorm)),
        ],
        2,
      );
    const q = joint("add_q_proj", "to_q", "norm_added_q", "norm_q");
    const k = joint("add_k_proj", "to_k", "norm_added_k", "norm_k");
    const v = joint("add_v_proj", "to_v");
    const attn = ropeAttention(q, k, v, rope, mask, heads.headChunk);
    const attnC = ops.slice(attn, [0], [textTokens], [1]);
    const attnX = ops.slice(attn, [textTokens], [attn.shape[1]!], [1]);

    let xOut = ops.add(x, ops.mul(gateX!, linear(ctx, `${a}.to_out.0`, attnX, inner)));
    let cOut = ops.add(c, ops.mul(gateC!, linear(ctx, `${a}.to_add_out`, attnC, inner)));
    const xn2 = modulate(layerNorm(xOut, EPS), shiftX2!, scaleX2!);
    xOut = ops.add(xOut, ops.mul(gateX2!, feedForward(ctx, `${name}.${keys.imageMlp}`, xn2, inner)));
    const cn2 = modulate(layerNorm(cOut, EPS), shiftC2!, scaleC2!);
    cOut = ops.add(cOut, ops.mul(gateC2!, feedForward(ctx, `${name}.${keys.textMlp}`, cn2, inner)));
    return [xOut, cOut];
  });
}
