import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import {
  fluxRotaryEmbedding,
  gelu,
  inFloat32,
  layerNorm,
  modulate,
  modulation,
  sinusoidalEmbedding,
} from "./flux-transformer.js";
import { type ComputeDType, type GraphWeights, graphWeights } from "./graph-weights.js";
import { linear, type ModuleContext } from "./layers.js";
import { type LoraOptions, type LoraParameter, LoraSet } from "./lora.js";
import type { QwenImageTransformerConfig } from "./qwen-image-config.js";
import type { WeightSource } from "./weight-source.js";

/** (frames, height, width) of one image in token units (latent pixels / patch size); frames is 1 for images. */
export type QwenImageShape = readonly [number, number, number];

/** Symbolic inputs of one QwenImageTransformer2DModel forward pass (diffusers argument names in the comments). */
export interface QwenImageTransformerInputs {
  /** `hidden_states` [B, N, in_channels]: packed target tokens, then each source image's tokens. */
  hiddenStates: Tensor;
  /** `encoder_hidden_states` [B, L, joint_attention_dim]: the Qwen2.5-VL hidden states. */
  encoderHiddenStates: Tensor;
  /** `encoder_hidden_states_mask` [B, L], 1 = valid token, 0 = padding; omit when no row is padded. */
  encoderHiddenStatesMask?: Tensor | undefined;
  /** `timestep` [B]: σ in [0, 1]; the model multiplies by 1000. */
  timestep: Tensor;
  /**
   * `img_shapes` of one sample: the noisy target first, then the source images in order (static, so the
   * rotary tables are baked into the graph). Σ f·h·w must equal N.
   */
  imgShapes: readonly QwenImageShape[];
}

export interface QwenImageTransformerOptions {
  /** Compute dtype; bf16/fp16 checkpoints are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /** Wrap the target Linear layers with LoRA whose factors become graph inputs (PEFT key names). */
  lora?: LoraOptions;
  /** Mark each block as a gradient-checkpointing region. */
  recompute?: boolean;
  /** Module-path prefix of the nodes (e.g. "v_theta"). */
  scope?: string;
}

export interface QwenImageTransformerOutput {
  /** [B, N, patch²·out_channels]: the velocity for every image token (the caller keeps the first N_target). */
  sample: Tensor;
  /** The LoRA factor inputs created for this pass, in build order (empty without `options.lora`). */
  lora: LoraParameter[];
}

const EPS = 1e-6;
const TIME_CHANNELS = 256;
// QwenEmbedRope precomputes 4096 positive and 4096 negative positions per axis; nothing beyond exists.
const ROPE_POSITIONS = 4096;
// Additive key mask for padded text: exp(−1e9 + s) is exactly 0 in fp32, like the boolean mask diffusers
// passes to SDPA, and it becomes −inf (still exact) when cast to fp16.
const MASKED = -1e9;

/**
 * The QwenImageTransformer2DModel forward (Qwen-Image, -Edit, -Edit-2509) as a graph, from weights with
 * diffusers keys. Like `buildFluxTransformer`, several calls on one graph share one set of initializers.
 */
export function buildQwenImageTransformer(
  g: Graph,
  config: QwenImageTransformerConfig,
  weights: WeightSource | GraphWeights,
  inputs: QwenImageTransformerInputs,
  options: QwenImageTransformerOptions = {},
): QwenImageTransformerOutput {
  const bound = graphWeights(g, weights, options.dtype === undefined ? {} : { dtype: options.dtype });
  const lora = options.lora ? new LoraSet(g, options.lora) : undefined;
  const ctx: ModuleContext = { weights: bound, lora };
  checkInputs(config, inputs);
  const build = () => forward(ctx, config, inputs, options.recompute ?? false);
  const sample = options.scope ? g.scope(options.scope, build) : build();
  return { sample, lora: lora?.parameters ?? [] };
}

function forward(
  ctx: ModuleContext,
  config: QwenImageTransformerConfig,
  inputs: QwenImageTransformerInputs,
  recompute: boolean,
): Tensor {
  const dtype = ctx.weights.dtype;
  const g = inputs.hiddenStates.graph;
  const inner = config.numAttentionHeads * config.attentionHeadDim;
  const textTokens = inputs.encoderHiddenStates.shape[1]!;
  const region = <T>(fn: () => T) => (recompute ? g.recompute(fn) : fn());

  let x = linear(ctx, "img_in", ops.cast(inputs.hiddenStates, dtype), inner);
  const txtNormed = g.scope("txt_norm", () =>
    nn.rmsNorm(ops.cast(inputs.encoderHiddenStates, dtype), {
      weight: ctx.weights.get("txt_norm.weight", [config.jointAttentionDim]),
      eps: EPS,
    }),
  );
  let c = linear(ctx, "txt_in", txtNormed, inner);
  const temb = g.scope("time_text_embed", () => timestepEmbedding(ctx, inputs.timestep, inner));
  // Every modulation (img_mod.0, txt_mod.0, norm_out) reads SiLU(temb); compute it once.
  const tembAct = nn.silu(temb);
  const rope = g.scope("pos_embed", () => {
    const ids = qwenImageRopeIds(inputs.imgShapes, textTokens);
    // Text first, matching the [text, image] order of the joint sequence.
    const all = g.constant(Float32Array.from([...ids.txt, ...ids.img]), [
      ids.txt.length / 3 + ids.img.length / 3,
      3,
    ]);
    return fluxRotaryEmbedding(all, config.axesDimsRope);
  });
  const mask = inputs.encoderHiddenStatesMask && g.scope("attention_mask", () => keyMask(inputs));

  for (let i = 0; i < config.numLayers; i++) {
    [x, c] = region(() => block(ctx, config, `transformer_blocks.${i}`, x, c, tembAct, rope, mask));
  }
  // Diffusers orders norm_out's modulation (scale, shift), unlike every block's (shift, scale, gate).
  const [scale, shift] = modulation(ctx, "norm_out.linear", tembAct, inner, 2);
  x = modulate(layerNorm(x, EPS), shift!, scale!);
  return linear(ctx, "proj_out", x, config.patchSize * config.patchSize * config.outChannels);
}

/** timestep_embedder(φ(σ)·1000): Linear → SiLU → Linear over the 256-d cos-first sinusoid. */
function timestepEmbedding(ctx: ModuleContext, timestep: Tensor, inner: number): Tensor {
  const dtype = ctx.weights.dtype;
  // diffusers casts σ to the compute dtype, builds the sinusoid in fp32 (scale 1000 applied to the angles),
  // and casts the features back before the MLP.
  const sigma = ops.cast(ops.cast(timestep, dtype), "float32");
  const t = ops.cast(sinusoidalEmbedding(sigma, TIME_CHANNELS, 1000), dtype);
  const name = "time_text_embed.timestep_embedder";
  return linear(ctx, `${name}.linear_2`, nn.silu(linear(ctx, `${name}.linear_1`, t, inner)), inner);
}

/** Additive mask [B, 1, 1, L + N] over the keys of the joint [text, image] sequence: padded text → −1e9. */
function keyMask(inputs: QwenImageTransformerInputs): Tensor {
  const g = inputs.hiddenStates.graph;
  const [batch, imageTokens] = inputs.hiddenStates.shape as [number, number];
  const m = ops.cast(inputs.encoderHiddenStatesMask!, "float32");
  const textTokens = m.shape[1]!;
  // (m − 1)·1e9 is exactly 0 for valid tokens, whatever their count.
  const text = ops.mul(ops.sub(m, 1), -MASKED);
  const image = ops.expand(g.constant(0), [batch, imageTokens]);
  return ops.reshape(ops.concat([text, image], 1), [batch, 1, 1, textTokens + imageTokens]);
}

interface Rope {
  cos: Tensor;
  sin: Tensor;
}

/** [B, L, heads·dim] → [B, heads, L, dim], RMS-normed per head when `normKey` is given. */
function heads(ctx: ModuleContext, config: QwenImageTransformerConfig, x: Tensor, normKey?: string): Tensor {
  const [batch, length] = x.shape as [number, number];
  let h = ops.reshape(x, [batch, length, config.numAttentionHeads, config.attentionHeadDim]);
  if (normKey) h = nn.rmsNorm(h, { weight: ctx.weights.get(normKey, [config.attentionHeadDim]), eps: EPS });
  return ops.transpose(h, [0, 2, 1, 3]);
}

function feedForward(ctx: ModuleContext, name: string, x: Tensor, inner: number): Tensor {
  const h = gelu(linear(ctx, `${name}.net.0.proj`, x, inner * 4));
  return linear(ctx, `${name}.net.2`, h, inner);
}

/** One QwenImageTransformerBlock: image stream x [B, N, D] and text stream c [B, L, D] → both updated. */
function block(
  ctx: ModuleContext,
  config: QwenImageTransformerConfig,
  name: string,
  x: Tensor,
  c: Tensor,
  tembAct: Tensor,
  rope: Rope,
  mask: Tensor | undefined,
): [Tensor, Tensor] {
  return x.graph.scope(name, () => {
    const inner = x.shape[2]!;
    const textTokens = c.shape[1]!;
    // img_mod.1 / txt_mod.1 emit (shift, scale, gate) for norm1, then the same for norm2.
    const [shiftX, scaleX, gateX, shiftX2, scaleX2, gateX2] = modulation(
      ctx,
      `${name}.img_mod.1`,
      tembAct,
      inner,
      6,
    );
    const [shiftC, scaleC, gateC, shiftC2, scaleC2, gateC2] = modulation(
      ctx,
      `${name}.txt_mod.1`,
      tembAct,
      inner,
      6,
    );
    const xn = modulate(layerNorm(x, EPS), shiftX!, scaleX!);
    const cn = modulate(layerNorm(c, EPS), shiftC!, scaleC!);

    const a = `${name}.attn`;
    const joint = (txtKey: string, imgKey: string, txtNorm?: string, imgNorm?: string) =>
      ops.concat(
        [
          heads(ctx, config, linear(ctx, `${a}.${txtKey}`, cn, inner), txtNorm && `${a}.${txtNorm}.weight`),
          heads(ctx, config, linear(ctx, `${a}.${imgKey}`, xn, inner), imgNorm && `${a}.${imgNorm}.weight`),
        ],
        2,
      );
    const q = joint("add_q_proj", "to_q", "norm_added_q", "norm_q");
    const k = joint("add_k_proj", "to_k", "norm_added_k", "norm_k");
    const v = joint("add_v_proj", "to_v");
    // Rotary runs per token, so one table over [text, image] equals diffusers' separate text and image passes.
    const rotate = (t: Tensor) => inFloat32(t, (t32) => nn.applyRotary(t32, rope.cos, rope.sin, true));
    const out = nn.scaledDotProductAttention(rotate(q), rotate(k), v, mask ? { mask } : {});
    const [batch, nHeads, length, dim] = out.shape as [number, number, number, number];
    const attn = ops.reshape(ops.transpose(out, [0, 2, 1, 3]), [batch, length, nHeads * dim]);
    const attnC = ops.slice(attn, [0], [textTokens], [1]);
    const attnX = ops.slice(attn, [textTokens], [length], [1]);

    let xOut = ops.add(x, ops.mul(gateX!, linear(ctx, `${a}.to_out.0`, attnX, inner)));
    let cOut = ops.add(c, ops.mul(gateC!, linear(ctx, `${a}.to_add_out`, attnC, inner)));
    const xn2 = modulate(layerNorm(xOut, EPS), shiftX2!, scaleX2!);
    xOut = ops.add(xOut, ops.mul(gateX2!, feedForward(ctx, `${name}.img_mlp`, xn2, inner)));
    const cn2 = modulate(layerNorm(cOut, EPS), shiftC2!, scaleC2!);
    cOut = ops.add(cOut, ops.mul(gateC2!, feedForward(ctx, `${name}.txt_mlp`, cn2, inner)));
    return [xOut, cOut];
  });
}

/**
 * MSRoPE positions (frame, row, column) as float rows [n, 3] for the image tokens of `imgShapes` (in order,
 * row-major over h, w) and for `textTokens` text tokens, as diffusers' QwenEmbedRope with scale_rope=True:
 * image k has frame index k and centred rows/columns −(h − ⌊h/2⌋) … ⌊h/2⌋ − 1; text token j sits at
 * m + j on all three axes, m = max over images of max(⌊h/2⌋, ⌊w/2⌋).
 */
export function qwenImageRopeIds(
  imgShapes: readonly QwenImageShape[],
  textTokens: number,
): { img: Float32Array; txt: Float32Array } {
  const img: number[] = [];
  let m = 0;
  imgShapes.forEach(([frames, h, w], k) => {
    for (let f = 0; f < frames; f++)
      for (let r = 0; r < h; r++)
        for (let col = 0; col < w; col++)
          img.push(k + f, r - (h - Math.floor(h / 2)), col - (w - Math.floor(w / 2)));
    m = Math.max(m, Math.floor(h / 2), Math.floor(w / 2));
  });
  const txt = new Float32Array(3 * textTokens);
  for (let j = 0; j < textTokens; j++) txt.fill(m + j, 3 * j, 3 * j + 3);
  return { img: Float32Array.from(img), txt };
}

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

function checkInputs(config: QwenImageTransformerConfig, inputs: QwenImageTransformerInputs): void {
  const { hiddenStates: hs, encoderHiddenStates: ehs, imgShapes } = inputs;
  const batch = hs.shape[0]!;
  const imageTokens = hs.shape[1]!;
  const textTokens = ehs.shape[1]!;
  const expect = (what: string, t: Tensor, shape: readonly number[]) => {
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new GraphError(
        `buildQwenImageTransformer: input ${what} has shape ${fmt(t.shape)}, expected ${fmt(shape)} ` +
          `(batch ${batch}, ${imageTokens} image tokens, ${textTokens} text tokens, from hidden_states and encoder_hidden_states)`,
      );
    }
  };
  expect("hidden_states", hs, [batch, imageTokens, config.inChannels]);
  expect("encoder_hidden_states", ehs, [batch, textTokens, config.jointAttentionDim]);
  expect("timestep", inputs.timestep, [batch]);
  if (inputs.encoderHiddenStatesMask)
    expect("encoder_hidden_states_mask", inputs.encoderHiddenStatesMask, [batch, textTokens]);
  const bad = imgShapes.find((s) => s.length !== 3 || !s.every((d) => Number.isInteger(d) && d > 0));
  if (imgShapes.length === 0 || bad) {
    throw new GraphError(
      `buildQwenImageTransformer: img_shapes must list (frames, height, width) positive integers per image, ` +
        `target first; got ${JSON.stringify(imgShapes)}`,
    );
  }
  const total = imgShapes.reduce((n, [f, h, w]) => n + f * h * w, 0);
  if (total !== imageTokens) {
    throw new GraphError(
      `buildQwenImageTransformer: img_shapes ${JSON.stringify(imgShapes)} cover ${total} tokens but ` +
        `hidden_states ${fmt(hs.shape)} has ${imageTokens}`,
    );
  }
  const m = Math.max(...imgShapes.map(([, h, w]) => Math.max(Math.floor(h / 2), Math.floor(w / 2))));
  const largest = Math.max(
    m + textTokens,
    imgShapes.length,
    ...imgShapes.map(([, h, w]) => Math.max(h, w) / 2),
  );
  if (largest > ROPE_POSITIONS) {
    throw new GraphError(
      `buildQwenImageTransformer: rotary positions reach ${largest}, past the ${ROPE_POSITIONS} the model ` +
        `defines (img_shapes ${JSON.stringify(imgShapes)}, ${textTokens} text tokens); use fewer text tokens or smaller images.`,
    );
  }
}

/** Sizes of one forward pass, for `qwenImageTransformerInputs`. */
export interface QwenImageInputSizes {
  batch: number;
  /** Target first, then the source images; the image token count is Σ f·h·w. */
  imgShapes: readonly QwenImageShape[];
  textTokens: number;
  /** Also create `encoder_hidden_states_mask` (for batches with padded text). Default false. */
  mask?: boolean;
}

/**
 * Creates float32 graph inputs named like the diffusers forward arguments (`hidden_states`,
 * `encoder_hidden_states`, `encoder_hidden_states_mask` when asked, `timestep`), plus the static img_shapes.
 */
export function qwenImageTransformerInputs(
  g: Graph,
  config: QwenImageTransformerConfig,
  sizes: QwenImageInputSizes,
  namePrefix = "",
): QwenImageTransformerInputs {
  const { batch, imgShapes, textTokens } = sizes;
  const imageTokens = imgShapes.reduce((n, [f, h, w]) => n + f * h * w, 0);
  const input = (name: string, shape: number[]) => g.input(namePrefix + name, "float32", shape);
  return {
    hiddenStates: input("hidden_states", [batch, imageTokens, config.inChannels]),
    encoderHiddenStates: input("encoder_hidden_states", [batch, textTokens, config.jointAttentionDim]),
    encoderHiddenStatesMask: sizes.mask
      ? input("encoder_hidden_states_mask", [batch, textTokens])
      : undefined,
    timestep: input("timestep", [batch]),
    imgShapes,
  };
}
