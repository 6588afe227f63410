import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import { fluxRotaryEmbedding, timestepEmbedding, timestepFeatures } from "./embeddings.js";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import {
  adaLayerNormContinuous,
  type ConditionTemb,
  type DoubleStreamKeys,
  doubleStreamBlock,
  headShape,
  inScope,
  linear,
  type ModuleContext,
  moduleContext,
} from "./layers.js";
import type { LoraOptions, LoraParameter } from "./lora.js";
import type { QwenImageTransformerConfig } from "./qwen-image-config.js";
import { inputShapeChecker } from "./transformer-inputs.js";
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
  /**
   * Heads per attention chunk (1…24 for Qwen-Image): attention runs that many heads at a time, so one chunk's
   * scores are alive instead of all heads' (the engine's `headChunk`). Same result; undefined: all at once.
   */
  attentionHeadChunk?: number | undefined;
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
// QwenEmbedRope precomputes 4096 positive and 4096 negative positions per axis; nothing beyond exists.
const ROPE_POSITIONS = 4096;
// Additive key mask for padded text: exp(−1e9 + s) is exactly 0 in fp32, like the boolean mask diffusers
// passes to SDPA, and it becomes −inf (still exact) when cast to fp16.
const MASKED = -1e9;
// diffusers' QwenImageTransformerBlock, in the shared double-stream layout: img_mod.1 / txt_mod.1 emit
// (shift, scale, gate) for norm1, then the same for norm2.
const DOUBLE_STREAM_KEYS: DoubleStreamKeys = {
  imageModulation: "img_mod.1",
  textModulation: "txt_mod.1",
  imageMlp: "img_mlp",
  textMlp: "txt_mlp",
};

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
  const ctx = moduleContext(g, weights, options);
  checkInputs(config, inputs);
  const sample = inScope(g, options.scope, () =>
    forward(ctx, config, inputs, options.recompute ?? false, options.attentionHeadChunk),
  );
  return { sample, lora: ctx.lora?.parameters ?? [] };
}

function forward(
  ctx: ModuleContext,
  config: QwenImageTransformerConfig,
  inputs: QwenImageTransformerInputs,
  recompute: boolean,
  headChunk: number | undefined,
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
  // timestep_embedder(φ(σ)): diffusers casts σ to the compute dtype, builds the 256-d sinusoid in fp32 (×1000
  // applied to the angles) and casts the features back before the MLP.
  const temb = g.scope("time_text_embed", () => {
    const features = timestepFeatures(inputs.timestep, ctx.weights.dtype, "angles");
    return timestepEmbedding(ctx, "time_text_embed.timestep_embedder", features, inner);
  });
  // Every modulation (img_mod.0, txt_mod.0, norm_out) reads SiLU(temb); compute it once.
  const tembAct = nn.silu(temb);
  // zero_cond_t (Edit-2511): the source images' tokens take their image modulation from temb(0) instead.
  const conditionTemb = config.zeroCondT ? zeroTimestepCondition(ctx, inputs, inner) : undefined;
  const rope = g.scope("pos_embed", () => {
    const ids = qwenImageRopeIds(inputs.imgShapes, textTokens);
    // Text first, matching the [text, image] order of the joint sequence. Rotary runs per token, so one table
    // over [text, image] equals diffusers' separate text and image passes.
    const all = g.constant(Float32Array.from([...ids.txt, ...ids.img]), [
      ids.txt.length / 3 + ids.img.length / 3,
      3,
    ]);
    return fluxRotaryEmbedding(all, config.axesDimsRope);
  });
  const mask = inputs.encoderHiddenStatesMask && g.scope("attention_mask", () => keyMask(inputs));
  const heads = { ...headShape(config), headChunk };

  for (let i = 0; i < config.numLayers; i++) {
    const name = `transformer_blocks.${i}`;
    [x, c] = region(() =>
      doubleStreamBlock(ctx, heads, name, DOUBLE_STREAM_KEYS, x, c, tembAct, rope, mask, conditionTemb),
    );
  }
  x = adaLayerNormContinuous(ctx, "norm_out", x, tembAct);
  return linear(ctx, "proj_out", x, config.patchSize * config.patchSize * config.outChannels);
}

/**
 * SiLU(temb(0)) and the target-token selector of `zero_cond_t`: diffusers embeds `cat([t, t·0])` and gives the
 * first prod(img_shapes[0]) tokens index 0 (t), the rest index 1 (zero).
 */
function zeroTimestepCondition(
  ctx: ModuleContext,
  inputs: QwenImageTransformerInputs,
  inner: number,
): ConditionTemb {
  const g = inputs.hiddenStates.graph;
  const tokens = inputs.hiddenStates.shape[1]!;
  const [f, h, w] = inputs.imgShapes[0]!;
  const target = f * h * w;
  const temb0 = g.scope("time_text_embed_zero", () => {
    const features = timestepFeatures(ops.mul(inputs.timestep, 0), ctx.weights.dtype, "angles");
    return timestepEmbedding(ctx, "time_text_embed.timestep_embedder", features, inner);
  });
  const isTarget = new Float32Array(tokens).fill(1, 0, target);
  return {
    tembAct: nn.silu(temb0),
    isTarget: ops.cast(g.constant(isTarget, [1, tokens, 1]), ctx.weights.dtype),
  };
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
  const expect = inputShapeChecker("buildQwenImageTransformer", { batch, imageTokens, textTokens });
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
