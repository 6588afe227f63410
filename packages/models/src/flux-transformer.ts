import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import { fluxRotaryEmbedding, type RotaryTables, timestepEmbedding, timestepFeatures } from "./embeddings.js";
import type { FluxTransformerConfig } from "./flux-config.js";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import {
  adaLayerNormContinuous,
  type DoubleStreamKeys,
  doubleStreamBlock,
  geluTanh,
  type HeadShape,
  headShape,
  inScope,
  layerNorm,
  linear,
  type ModuleContext,
  modulate,
  modulation,
  moduleContext,
  ropeAttention,
  splitHeads,
} from "./layers.js";
import type { LoraOptions, LoraParameter } from "./lora.js";
import { inputShapeChecker } from "./transformer-inputs.js";
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
  /**
   * Heads per attention chunk (1…24 for FLUX.1): attention runs that many heads at a time, so one chunk's
   * scores are alive instead of all heads' (the engine's `headChunk`). Same result; undefined: all at once.
   */
  attentionHeadChunk?: number | undefined;
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
// diffusers' FluxTransformerBlock, in the shared double-stream layout.
const DOUBLE_STREAM_KEYS: DoubleStreamKeys = {
  imageModulation: "norm1.linear",
  textModulation: "norm1_context.linear",
  imageMlp: "ff",
  textMlp: "ff_context",
};

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
  const ctx = moduleContext(g, weights, options);
  const dims = checkInputs(config, inputs);
  const sample = inScope(g, options.scope, () =>
    forward(ctx, config, inputs, dims, options.recompute ?? false, options.attentionHeadChunk),
  );
  return { sample, lora: ctx.lora?.parameters ?? [] };
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
  headChunk: number | undefined,
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
  const rope = g.scope("pos_embed", () =>
    fluxRotaryEmbedding(ops.concat([inputs.txtIds, inputs.imgIds], 0), config.axesDimsRope),
  );
  const heads = { ...headShape(config), headChunk };

  for (let i = 0; i < config.numLayers; i++) {
    const name = `transformer_blocks.${i}`;
    [x, c] = region(() => doubleStreamBlock(ctx, heads, name, DOUBLE_STREAM_KEYS, x, c, tembAct, rope));
  }
  let s = ops.concat([c, x], 1);
  for (let i = 0; i < config.numSingleLayers; i++) {
    s = region(() => singleBlock(ctx, heads, `single_transformer_blocks.${i}`, s, tembAct, rope));
  }
  x = ops.slice(s, [textTokens], [textTokens + dims.imageTokens], [1]);
  x = adaLayerNormContinuous(ctx, "norm_out", x, tembAct);
  return linear(ctx, "proj_out", x, config.outChannels * config.patchSize * config.patchSize);
}

function timeTextEmbedding(
  ctx: ModuleContext,
  config: FluxTransformerConfig,
  inputs: FluxTransformerInputs,
  inner: number,
): Tensor {
  // σ·1000 is formed in the compute dtype (diffusers does, so fp16/bf16 runs see its rounding), the sinusoid in fp32.
  const features = (v: Tensor) => timestepFeatures(v, ctx.weights.dtype, "input");
  let temb = timestepEmbedding(ctx, "time_text_embed.timestep_embedder", features(inputs.timestep), inner);
  if (config.guidanceEmbeds) {
    const gs = features(inputs.guidance!);
    temb = ops.add(temb, timestepEmbedding(ctx, "time_text_embed.guidance_embedder", gs, inner));
  }
  const pooled = ops.cast(inputs.pooledProjections, ctx.weights.dtype);
  return ops.add(temb, timestepEmbedding(ctx, "time_text_embed.text_embedder", pooled, inner));
}

/**
 * One FluxSingleTransformerBlock over the joint [text, image] sequence s: attention and an MLP run in parallel
 * from one modulated norm, and one projection of their concatenation is added back, gated.
 */
function singleBlock(
  ctx: ModuleContext,
  heads: HeadShape,
  name: string,
  s: Tensor,
  tembAct: Tensor,
  rope: RotaryTables,
): Tensor {
  return s.graph.scope(name, () => {
    const inner = s.shape[2]!;
    const [shift, scale, gate] = modulation(ctx, `${name}.norm.linear`, tembAct, inner, 3);
    const sn = modulate(layerNorm(s, LN_EPS), shift!, scale!);
    const a = `${name}.attn`;
    const norm = (key: string) => ({ key: `${a}.${key}.weight`, eps: LN_EPS });
    const q = splitHeads(ctx, linear(ctx, `${a}.to_q`, sn, inner), heads, norm("norm_q"));
    const k = splitHeads(ctx, linear(ctx, `${a}.to_k`, sn, inner), heads, norm("norm_k"));
    const v = splitHeads(ctx, linear(ctx, `${a}.to_v`, sn, inner), heads);
    const attn = ropeAttention(q, k, v, rope, undefined, heads.headChunk);
    const mlp = geluTanh(linear(ctx, `${name}.proj_mlp`, sn, inner * 4));
    const out = linear(ctx, `${name}.proj_out`, ops.concat([attn, mlp], 2), inner);
    return ops.add(s, ops.mul(gate!, out));
  });
}

function checkInputs(config: FluxTransformerConfig, inputs: FluxTransformerInputs): Dims {
  const { hiddenStates: hs, encoderHiddenStates: ehs } = inputs;
  const batch = hs.shape[0]!;
  const imageTokens = hs.shape[1]!;
  const textTokens = ehs.shape[1]!;
  const expect = inputShapeChecker("buildFluxTransformer", { batch, imageTokens, textTokens });
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
