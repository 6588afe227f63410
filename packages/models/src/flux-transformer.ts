import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { FluxTransformerConfig } from "./flux-config.js";
import { type ComputeDType, type GraphWeights, graphWeights } from "./graph-weights.js";
import { linear, type ModuleContext } from "./layers.js";
import { type LoraOptions, type LoraParameter, LoraSet } from "./lora.js";
import type { WeightSource } from "./weight-source.js";

/** Symbolic inputs of one FLUX transformer forward pass (diffusers argument names in the comments). */
export interface FluxTransformerInputs {
  /** `hidden_states` [B, N, in_channels]: packed target tokens, then (Kontext) the context-image tokens. */
  hiddenStates: Tensor;
  /** `encoder_hidden_states` [B, T, joint_attention_dim]: T5 output. */
  encoderHiddenStates: Tensor;
  /** `pooled_projections` [B, pooled_projection_dim]: CLIP pooled output. */
  pooledProjections: Tensor;
  /** `timestep` [B]: σ in [0, 1]; the model multiplies by 1000. */
  timestep: Tensor;
  /** `guidance` [B]: the distilled guidance scale (e.g. 2.5); required iff the config has guidance_embeds. */
  guidance?: Tensor | undefined;
  /** `img_ids` [N, 3]: (index, row, column) per image token; Kontext context tokens have index 1. */
  imgIds: Tensor;
  /** `txt_ids` [T, 3]: zeros for FLUX. */
  txtIds: Tensor;
}

export interface FluxTransformerOptions {
  /** Compute dtype; bf16/fp16 checkpoints are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /** Wrap the target Linear layers with LoRA whose factors become graph inputs (PEFT key names). */
  lora?: LoraOptions;
  /** Mark each block as a gradient-checkpointing region. */
  recompute?: boolean;
  /** Module-path prefix of the nodes (e.g. "v_theta"), so several passes in one graph stay readable. */
  scope?: string;
}

export interface FluxTransformerOutput {
  /** [B, N, out_channels]: the velocity for every image token (the caller keeps the first N_target). */
  sample: Tensor;
  /** The LoRA factor inputs created for this pass, in build order (empty without `options.lora`). */
  lora: LoraParameter[];
}

const LN_EPS = 1e-6;
const ROPE_THETA = 10000;
const TIME_CHANNELS = 256;

/**
 * The FluxTransformer2DModel forward (FLUX.1 and FLUX.1-Kontext) as a graph, from weights with diffusers keys.
 *
 * A plain function of the graph and its symbolic inputs: calling it several times on one graph (with and
 * without LoRA, or with two LoRA sets under distinct `inputPrefix`es) reuses one set of weight initializers.
 */
export function buildFluxTransformer(
  g: Graph,
  config: FluxTransformerConfig,
  weights: WeightSource | GraphWeights,
  inputs: FluxTransformerInputs,
  options: FluxTransformerOptions = {},
): FluxTransformerOutput {
  const bound = graphWeights(g, weights, options.dtype === undefined ? {} : { dtype: options.dtype });
  const lora = options.lora ? new LoraSet(g, options.lora) : undefined;
  const ctx: ModuleContext = { weights: bound, lora };
  const dims = checkInputs(config, inputs);
  const build = () => forward(ctx, config, inputs, dims, options.recompute ?? false);
  const sample = options.scope ? g.scope(options.scope, build) : build();
  return { sample, lora: lora?.parameters ?? [] };
}

interface Dims {
  batch: number;
  imageTokens: number;
  textTokens: number;
  inner: number;
}

function forward(
  ctx: ModuleContext,
  config: FluxTransformerConfig,
  inputs: FluxTransformerInputs,
  dims: Dims,
  recompute: boolean,
): Tensor {
  const dtype = ctx.weights.dtype;
  const g = inputs.hiddenStates.graph;
  const { inner, textTokens } = dims;
  const region = <T>(fn: () => T) => (recompute ? g.recompute(fn) : fn());

  let x = linear(ctx, "x_embedder", ops.cast(inputs.hiddenStates, dtype), inner);
  let c = linear(ctx, "context_embedder", ops.cast(inputs.encoderHiddenStates, dtype), inner);
  const temb = g.scope("time_text_embed", () => timeTextEmbedding(ctx, config, inputs, inner));
  // Every modulation reads SiLU(temb); compute it once.
  const tembAct = nn.silu(temb);
  const { cos, sin } = g.scope("pos_embed", () =>
    fluxRotaryEmbedding(ops.concat([inputs.txtIds, inputs.imgIds], 0), config.axesDimsRope),
  );
  const rope = { cos, sin };

  for (let i = 0; i < config.numLayers; i++) {
    [x, c] = region(() => doubleBlock(ctx, config, `transformer_blocks.${i}`, x, c, tembAct, rope));
  }
  let s = ops.concat([c, x], 1);
  for (let i = 0; i < config.numSingleLayers; i++) {
    s = region(() => singleBlock(ctx, config, `single_transformer_blocks.${i}`, s, tembAct, rope));
  }
  x = ops.slice(s, [textTokens], [textTokens + dims.imageTokens], [1]);
  // Diffusers orders norm_out's modulation (scale, shift), unlike every block's (shift, scale, gate).
  const [scale, shift] = modulation(ctx, "norm_out.linear", tembAct, inner, 2);
  x = modulate(layerNorm(x, LN_EPS), shift!, scale!);
  return linear(ctx, "proj_out", x, config.outChannels * config.patchSize * config.patchSize);
}

function timeTextEmbedding(
  ctx: ModuleContext,
  config: FluxTransformerConfig,
  inputs: FluxTransformerInputs,
  inner: number,
): Tensor {
  const dtype = ctx.weights.dtype;
  const mlp = (name: string, v: Tensor) =>
    linear(ctx, `${name}.linear_2`, nn.silu(linear(ctx, `${name}.linear_1`, v, inner)), inner);
  // σ·1000 is formed in the compute dtype (diffusers does, so fp16/bf16 runs see its rounding), the sinusoid in fp32.
  const features = (v: Tensor) =>
    ops.cast(
      sinusoidalEmbedding(ops.cast(ops.mul(ops.cast(v, dtype), 1000), "float32"), TIME_CHANNELS),
      dtype,
    );
  const t = features(inputs.timestep);
  let temb = mlp("time_text_embed.timestep_embedder", t);
  if (config.guidanceEmbeds) {
    const gs = features(inputs.guidance!);
    temb = ops.add(temb, mlp("time_text_embed.guidance_embedder", gs));
  }
  return ops.add(temb, mlp("time_text_embed.text_embedder", ops.cast(inputs.pooledProjections, dtype)));
}

/**
 * Sinusoidal timestep features [B, channels] of t [B], cosine half first (diffusers `Timesteps` with
 * flip_sin_to_cos=True, downscale_freq_shift=0): f_j = exp(−ln(10000)·j/half). `scale` multiplies the
 * angles t·f_j afterwards, as diffusers' `Timesteps(scale=…)` does (Qwen-Image passes σ and scale 1000).
 */
export function sinusoidalEmbedding(t: Tensor, channels: number, scale = 1): Tensor {
  const half = channels / 2;
  const freqs = new Float32Array(half);
  // Rounded through float32 in the same steps as torch, which builds the exponent in float32.
  const lnPeriod = Math.fround(-Math.log(10000));
  for (let j = 0; j < half; j++)
    freqs[j] = Math.fround(Math.exp(Math.fround(Math.fround(lnPeriod * j) / half)));
  const g = t.graph;
  const f = ops.cast(g.constant(freqs, [1, half]), t.dtype);
  let angles = ops.mul(ops.reshape(t, [t.shape[0]!, 1]), f);
  if (scale !== 1) angles = ops.mul(angles, scale);
  return ops.concat([ops.cos(angles), ops.sin(angles)], 1);
}

/**
 * FLUX's 3-axis rotary tables for ids [L, 3]: axis i uses angles id_i · θ^(−2j/d_i), j < d_i/2, each angle
 * repeated for both members of its pair; the axes are concatenated to [L, Σd_i]. Always float32.
 */
export function fluxRotaryEmbedding(ids: Tensor, axesDims: readonly number[]): { cos: Tensor; sin: Tensor } {
  const g = ids.graph;
  const length = ids.shape[0]!;
  const pos32 = ops.cast(ids, "float32");
  const angles = axesDims.map((d, axis) => {
    const freqs = new Float32Array(d / 2);
    for (let j = 0; j < d / 2; j++) freqs[j] = 1 / ROPE_THETA ** ((2 * j) / d);
    const pos = ops.slice(pos32, [axis], [axis + 1], [1]);
    const a = ops.mul(pos, g.constant(freqs, [1, d / 2]));
    return ops.reshape(ops.expand(ops.reshape(a, [length, d / 2, 1]), [length, d / 2, 2]), [length, d]);
  });
  const all = ops.concat(angles, 1);
  return { cos: ops.cos(all), sin: ops.sin(all) };
}

interface Rope {
  cos: Tensor;
  sin: Tensor;
}

/**
 * `Linear(SiLU(temb))` split into `count` chunks of [B, 1, width] (broadcast over tokens). Exported for the
 * Qwen-Image builder, whose blocks modulate the same way (not part of the package API).
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

export function modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor {
  return ops.add(ops.mul(x, ops.add(scale, 1)), shift);
}

/** [B, L, heads·dim] → per-head RMS-normed [B, heads, L, dim]. */
function heads(ctx: ModuleContext, config: FluxTransformerConfig, x: Tensor, normKey: string): Tensor {
  const [batch, length] = x.shape as [number, number];
  const h = ops.reshape(x, [batch, length, config.numAttentionHeads, config.attentionHeadDim]);
  const normed = nn.rmsNorm(h, { weight: ctx.weights.get(normKey, [config.attentionHeadDim]), eps: LN_EPS });
  return ops.transpose(normed, [0, 2, 1, 3]);
}

/** Attention over q/k/v [B, heads, L, dim] with rotary q and k, back to [B, L, heads·dim]. */
function ropeAttention(q: Tensor, k: Tensor, v: Tensor, rope: Rope): Tensor {
  const out = nn.scaledDotProductAttention(
    inFloat32(q, (x) => nn.applyRotary(x, rope.cos, rope.sin, true)),
    inFloat32(k, (x) => nn.applyRotary(x, rope.cos, rope.sin, true)),
    v,
  );
  const [batch, nHeads, length, dim] = out.shape as [number, number, number, number];
  return ops.reshape(ops.transpose(out, [0, 2, 1, 3]), [batch, length, nHeads * dim]);
}

function feedForward(ctx: ModuleContext, name: string, x: Tensor, inner: number): Tensor {
  const h = gelu(linear(ctx, `${name}.net.0.proj`, x, inner * 4));
  return linear(ctx, `${name}.net.2`, h, inner);
}

function doubleBlock(
  ctx: ModuleContext,
  config: FluxTransformerConfig,
  name: string,
  x: Tensor,
  c: Tensor,
  tembAct: Tensor,
  rope: Rope,
): [Tensor, Tensor] {
  const g = x.graph;
  return g.scope(name, () => {
    const inner = x.shape[2]!;
    const textTokens = c.shape[1]!;
    const [shiftX, scaleX, gateX, shiftX2, scaleX2, gateX2] = modulation(
      ctx,
      `${name}.norm1.linear`,
      tembAct,
      inner,
      6,
    );
    const [shiftC, scaleC, gateC, shiftC2, scaleC2, gateC2] = modulation(
      ctx,
      `${name}.norm1_context.linear`,
      tembAct,
      inner,
      6,
    );
    const xn = modulate(layerNorm(x, LN_EPS), shiftX!, scaleX!);
    const cn = modulate(layerNorm(c, LN_EPS), shiftC!, scaleC!);

    const a = `${name}.attn`;
    const q = ops.concat(
      [
        heads(ctx, config, linear(ctx, `${a}.add_q_proj`, cn, inner), `${a}.norm_added_q.weight`),
        heads(ctx, config, linear(ctx, `${a}.to_q`, xn, inner), `${a}.norm_q.weight`),
      ],
      2,
    );
    const k = ops.concat(
      [
        heads(ctx, config, linear(ctx, `${a}.add_k_proj`, cn, inner), `${a}.norm_added_k.weight`),
        heads(ctx, config, linear(ctx, `${a}.to_k`, xn, inner), `${a}.norm_k.weight`),
      ],
      2,
    );
    const v = ops.concat(
      [
        splitHeads(config, linear(ctx, `${a}.add_v_proj`, cn, inner)),
        splitHeads(config, linear(ctx, `${a}.to_v`, xn, inner)),
      ],
      2,
    );
    const joint = ropeAttention(q, k, v, rope);
    const attnC = ops.slice(joint, [0], [textTokens], [1]);
    const attnX = ops.slice(joint, [textTokens], [joint.shape[1]!], [1]);

    let xOut = ops.add(x, ops.mul(gateX!, linear(ctx, `${a}.to_out.0`, attnX, inner)));
    let cOut = ops.add(c, ops.mul(gateC!, linear(ctx, `${a}.to_add_out`, attnC, inner)));
    const xn2 = modulate(layerNorm(xOut, LN_EPS), shiftX2!, scaleX2!);
    xOut = ops.add(xOut, ops.mul(gateX2!, feedForward(ctx, `${name}.ff`, xn2, inner)));
    const cn2 = modulate(layerNorm(cOut, LN_EPS), shiftC2!, scaleC2!);
    cOut = ops.add(cOut, ops.mul(gateC2!, feedForward(ctx, `${name}.ff_context`, cn2, inner)));
    return [xOut, cOut];
  });
}

function splitHeads(config: FluxTransformerConfig, x: Tensor): Tensor {
  const [batch, length] = x.shape as [number, number];
  return ops.transpose(
    ops.reshape(x, [batch, length, config.numAttentionHeads, config.attentionHeadDim]),
    [0, 2, 1, 3],
  );
}

function singleBlock(
  ctx: ModuleContext,
  config: FluxTransformerConfig,
  name: string,
  s: Tensor,
  tembAct: Tensor,
  rope: Rope,
): Tensor {
  return s.graph.scope(name, () => {
    const inner = s.shape[2]!;
    const [shift, scale, gate] = modulation(ctx, `${name}.norm.linear`, tembAct, inner, 3);
    const sn = modulate(layerNorm(s, LN_EPS), shift!, scale!);
    const a = `${name}.attn`;
    const q = heads(ctx, config, linear(ctx, `${a}.to_q`, sn, inner), `${a}.norm_q.weight`);
    const k = heads(ctx, config, linear(ctx, `${a}.to_k`, sn, inner), `${a}.norm_k.weight`);
    const v = splitHeads(config, linear(ctx, `${a}.to_v`, sn, inner));
    const attn = ropeAttention(q, k, v, rope);
    const mlp = gelu(linear(ctx, `${name}.proj_mlp`, sn, inner * 4));
    const out = linear(ctx, `${name}.proj_out`, ops.concat([attn, mlp], 2), inner);
    return ops.add(s, ops.mul(gate!, out));
  });
}

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

function checkInputs(config: FluxTransformerConfig, inputs: FluxTransformerInputs): Dims {
  const { hiddenStates: hs, encoderHiddenStates: ehs } = inputs;
  const batch = hs.shape[0]!;
  const imageTokens = hs.shape[1]!;
  const textTokens = ehs.shape[1]!;
  const expect = (what: string, t: Tensor | undefined, shape: readonly number[]) => {
    if (!t)
      throw new GraphError(`buildFluxTransformer: input ${what} is missing (expected shape ${fmt(shape)})`);
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new GraphError(
        `buildFluxTransformer: input ${what} has shape ${fmt(t.shape)}, expected ${fmt(shape)} ` +
          `(batch ${batch}, ${imageTokens} image tokens, ${textTokens} text tokens, from hidden_states and encoder_hidden_states)`,
      );
    }
  };
  expect("hidden_states", hs, [batch, imageTokens, config.inChannels]);
  expect("encoder_hidden_states", ehs, [batch, textTokens, config.jointAttentionDim]);
  expect("pooled_projections", inputs.pooledProjections, [batch, config.pooledProjectionDim]);
  expect("timestep", inputs.timestep, [batch]);
  expect("img_ids", inputs.imgIds, [imageTokens, 3]);
  expect("txt_ids", inputs.txtIds, [textTokens, 3]);
  if (config.guidanceEmbeds) expect("guidance", inputs.guidance, [batch]);
  else if (inputs.guidance) {
    throw new GraphError(
      "buildFluxTransformer: a guidance input was given but the config has guidance_embeds false; " +
        "this checkpoint is not guidance-distilled, so drop the guidance input (or use CFG outside the model).",
    );
  }
  return { batch, imageTokens, textTokens, inner: config.numAttentionHeads * config.attentionHeadDim };
}

/** Sizes of one forward pass, for `fluxTransformerInputs`. */
export interface FluxInputSizes {
  batch: number;
  imageTokens: number;
  textTokens: number;
}

/**
 * Creates graph inputs named like the diffusers forward arguments (`hidden_states`, `encoder_hidden_states`,
 * `pooled_projections`, `timestep`, `guidance` when the config has it, `img_ids`, `txt_ids`), in float32.
 */
export function fluxTransformerInputs(
  g: Graph,
  config: FluxTransformerConfig,
  sizes: FluxInputSizes,
  namePrefix = "",
): FluxTransformerInputs {
  const { batch, imageTokens, textTokens } = sizes;
  const input = (name: string, shape: number[]) => g.input(namePrefix + name, "float32", shape);
  return {
    hiddenStates: input("hidden_states", [batch, imageTokens, config.inChannels]),
    encoderHiddenStates: input("encoder_hidden_states", [batch, textTokens, config.jointAttentionDim]),
    pooledProjections: input("pooled_projections", [batch, config.pooledProjectionDim]),
    timestep: input("timestep", [batch]),
    guidance: config.guidanceEmbeds ? input("guidance", [batch]) : undefined,
    imgIds: input("img_ids", [imageTokens, 3]),
    txtIds: input("txt_ids", [textTokens, 3]),
  };
}

/** LayerNorm without affine parameters, eps 1e-6 (every FLUX norm outside attention). */
export function layerNorm(x: Tensor, eps: number): Tensor {
  return inFloat32(x, (y) => nn.layerNorm(y, { eps }));
}

/**
 * Runs `fn` on x in float32 and casts back: diffusers (and PyTorch's LayerNorm kernels) keep normalisation
 * statistics and rotary products in fp32 under 16-bit compute.
 */
export function inFloat32(x: Tensor, fn: (x32: Tensor) => Tensor): Tensor {
  return ops.cast(fn(ops.cast(x, "float32")), x.dtype);
}

export function gelu(x: Tensor): Tensor {
  return nn.gelu(x, "tanh");
}
