import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import { inScope, linear, type ModuleContext, mergeHeads, moduleContext } from "./layers.js";
import type { Qwen25VLActivation, Qwen25VLConfig } from "./qwen2-5-vl-config.js";
import type { Qwen25VLImageGrid } from "./qwen2-5-vl-rope-index.js";
import { WeightError, type WeightSource } from "./weight-source.js";

/** Symbolic inputs of the Qwen2.5-VL vision tower. */
export interface Qwen25VLVisionInputs {
  /**
   * `pixel_values` [P, channels·temporal_patch·patch²] (1176 for Qwen2.5-VL): the image processor's rows, all
   * images concatenated in order, each image's rows in 2×2 merge-unit order.
   */
  pixelValues: Tensor;
  /** `image_grid_thw`, one (t, h, w) in patches per image (static: they decide the windows and rotary tables). */
  imageGrids: readonly Qwen25VLImageGrid[];
}

export interface Qwen25VLVisionOptions {
  /** Compute dtype; bf16/fp16 checkpoints are cast inside the graph. Default float32. */
  dtype?: ComputeDType;
  /**
   * Prefix of the vision tower's keys: "visual." (the checkpoints Qwen ships) or "model.visual." (transformers
   * ≥ 4.52 saves); found in the weights when omitted.
   */
  keyPrefix?: string;
  /** Module-path prefix of the nodes. */
  scope?: string;
}

// The vision tower's RMSNorms (blocks and merger) use eps 1e-6 whatever the text config says.
const VISION_EPS = 1e-6;
const VISION_ROPE_THETA = 10000;
// Additive attention mask: exp(−1e9 + s) is exactly 0 in fp32 (and −inf, still exact, in fp16).
export const MASKED = -1e9;

/**
 * transformers' `Qwen2_5_VisionTransformerPretrainedModel` (`model.visual(pixel_values, grid_thw)`) as a graph:
 * patch embedding (the Conv3d as one matmul over the flattened patches), 2-D rotary embedding (rows, then
 * columns, rotate-half), pre-RMSNorm blocks with window attention except in `fullatt_block_indexes`, and the
 * 2×2 patch merger. Returns the image embeddings [P / merge², out_hidden_size], images in order.
 *
 * transformers sorts the merge units into window order before the blocks and back after the merger; here
 * they stay in the processor's order and each block's attention is masked to the query's own window (or,
 * in full-attention blocks, its own image frame). Both compute the same sums: attention does not depend on
 * the order of the keys, and the merger reads whole merge units, which the reordering never splits.
 */
export function buildQwen25VLVision(
  g: Graph,
  config: Qwen25VLConfig,
  weights: WeightSource | GraphWeights,
  inputs: Qwen25VLVisionInputs,
  options: Qwen25VLVisionOptions = {},
): Tensor {
  const ctx = moduleContext(g, weights, options);
  const prefix = options.keyPrefix ?? visionKeyPrefix(ctx.weights);
  return inScope(g, options.scope, () => visionForward(ctx, config, prefix, inputs));
}

/** The vision forward on bound weights (shared with the full encoder). */
export function visionForward(
  ctx: ModuleContext,
  config: Qwen25VLConfig,
  p: string,
  inputs: Qwen25VLVisionInputs,
): Tensor {
  const v = config.vision;
  const g = inputs.pixelValues.graph;
  const dtype = ctx.weights.dtype;
  const patches = checkVisionInputs(config, inputs);
  const patchDim = v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize;
  const d = v.hiddenSize;

  // Conv3d with kernel = stride = (temporal_patch, patch, patch) over one patch per row is a matmul.
  let x = g.scope(`${p}patch_embed`, () => {
    const w = ctx.weights.get(`${p}patch_embed.proj.weight`, [
      d,
      v.inChannels,
      v.temporalPatchSize,
      v.patchSize,
      v.patchSize,
    ]);
    return nn.linear(ops.cast(inputs.pixelValues, dtype), ops.reshape(w, [d, patchDim]));
  });
  x = ops.reshape(x, [1, patches, d]);

  const layout = visionLayout(config, inputs.imageGrids);
  const rope = g.scope(`${p}rotary_pos_emb`, () => ({
    cos: g.constant(layout.cos, [patches, d / v.numHeads]),
    sin: g.constant(layout.sin, [patches, d / v.numHeads]),
  }));
  const full = new Set(v.fullattBlockIndexes);
  const masks = g.scope(`${p}attention_masks`, () => ({
    window: full.size < v.depth ? segmentMask(g, layout.windowIds) : undefined,
    full: full.size > 0 ? segmentMask(g, layout.frameIds) : undefined,
  }));

  for (let i = 0; i < v.depth; i++) {
    const name = `${p}blocks.${i}`;
    const mask = (full.has(i) ? masks.full : masks.window)!;
    x = g.scope(name, () => visionBlock(ctx, config, name, x, rope, mask));
  }

  return g.scope(`${p}merger`, () => {
    const unit = v.spatialMergeSize * v.spatialMergeSize;
    const normed = qwenRmsNorm(ctx, `${p}merger.ln_q`, ops.reshape(x, [patches, d]), VISION_EPS);
    const grouped = ops.reshape(normed, [patches / unit, unit * d]);
    const h = nn.gelu(linear(ctx, `${p}merger.mlp.0`, grouped, unit * d));
    return linear(ctx, `${p}merger.mlp.2`, h, v.outHiddenSize);
  });
}

function visionBlock(
  ctx: ModuleContext,
  config: Qwen25VLConfig,
  name: string,
  x: Tensor,
  rope: { cos: Tensor; sin: Tensor },
  mask: Tensor,
): Tensor {
  const v = config.vision;
  const d = v.hiddenSize;
  const heads = v.numHeads;
  const headDim = d / heads;
  const patches = x.shape[1]!;
  const a = `${name}.attn`;
  const h = qwenRmsNorm(ctx, `${name}.norm1`, x, VISION_EPS);
  // qkv rows are laid out [3, heads, head_dim].
  const qkv = ops.reshape(linear(ctx, `${a}.qkv`, h, 3 * d), [1, patches, 3, heads, headDim]);
  const part = (k: number) =>
    ops.transpose(ops.reshape(ops.slice(qkv, [k], [k + 1], [2]), [1, patches, heads, headDim]), [0, 2, 1, 3]);
  // transformers rotates the vision q and k in fp32.
  const rotate = (t: Tensor) =>
    ops.cast(nn.applyRotary(ops.cast(t, "float32"), rope.cos, rope.sin, false), t.dtype);
  const attn = nn.scaledDotProductAttention(rotate(part(0)), rotate(part(1)), part(2), { mask });
  const x1 = ops.add(x, linear(ctx, `${a}.proj`, mergeHeads(attn), d));
  const y = qwenRmsNorm(ctx, `${name}.norm2`, x1, VISION_EPS);
  return ops.add(x1, gatedMlp(ctx, `${name}.mlp`, y, v.intermediateSize, d, v.hiddenAct, true));
}

/** down(act(gate(x)) · up(x)): the SwiGLU MLP of the Qwen2 LLM (no bias) and of the vision blocks (bias). */
export function gatedMlp(
  ctx: ModuleContext,
  name: string,
  x: Tensor,
  inner: number,
  out: number,
  act: Qwen25VLActivation,
  bias: boolean,
): Tensor {
  const gate = activate(linear(ctx, `${name}.gate_proj`, x, inner, bias), act);
  const up = linear(ctx, `${name}.up_proj`, x, inner, bias);
  return linear(ctx, `${name}.down_proj`, ops.mul(gate, up), out, bias);
}

function activate(x: Tensor, act: Qwen25VLActivation): Tensor {
  switch (act) {
    case "silu":
      return nn.silu(x);
    case "gelu":
      return nn.gelu(x);
    case "gelu_pytorch_tanh":
      return nn.gelu(x, "tanh");
    case "quick_gelu":
      return ops.mul(x, ops.sigmoid(ops.mul(x, 1.702)));
  }
}

/**
 * transformers' Qwen2RMSNorm: normalised in fp32, cast back to the compute dtype, then scaled by the weight
 * in that dtype.
 */
export function qwenRmsNorm(ctx: ModuleContext, name: string, x: Tensor, eps: number): Tensor {
  const width = x.shape[x.rank - 1]!;
  const weight = ctx.weights.get(`${name}.weight`, [width]);
  return x.graph.scope(name, () => ops.mul(weight, nn.rmsNorm(x, { eps })));
}

/**
 * Inverse rotary frequencies 1 / θ^(2j/dim), j < dim/2, rounded through float32 in the steps torch takes
 * (the exponent, the power and the reciprocal are each float32).
 */
export function inverseFrequencies(dim: number, theta: number): Float32Array {
  const f = Math.fround;
  return Float32Array.from({ length: dim / 2 }, (_, j) => f(1 / f(theta ** f((2 * j) / dim))));
}

/** Where each patch sits, in the processor's row order, and what it may attend to. */
interface VisionLayout {
  /** Rotary cos/sin [P, head_dim]: row angles then column angles, the pair repeated for rotate-half. */
  cos: Float32Array;
  sin: Float32Array;
  /** Per patch: an id shared exactly by the patches of its attention window. */
  windowIds: Float32Array;
  /** Per patch: an id shared exactly by the patches of its image frame (full-attention blocks). */
  frameIds: Float32Array;
}

/**
 * Rows of an image's `pixel_values` come frame by frame, each frame in merged cells of merge×merge patches
 * (cells row-major, patches row-major inside a cell). A window is window_size / merge / patch merged cells
 * square, tiled from the top-left of each frame (partial at the bottom and right edges).
 */
function visionLayout(config: Qwen25VLConfig, grids: readonly Qwen25VLImageGrid[]): VisionLayout {
  const v = config.vision;
  const m = v.spatialMergeSize;
  const headDim = v.hiddenSize / v.numHeads;
  const inv = inverseFrequencies(headDim / 2, VISION_ROPE_THETA);
  const nf = inv.length;
  const cellsPerWindow = Math.floor(v.windowSize / m / v.patchSize);
  const total = grids.reduce((n, [t, h, w]) => n + t * h * w, 0);
  const cos = new Float32Array(total * headDim);
  const sin = new Float32Array(total * headDim);
  const windowIds = new Float32Array(total);
  const frameIds = new Float32Array(total);
  let at = 0;
  let windowBase = 0;
  let frameBase = 0;
  for (const [t, h, w] of grids) {
    const cellsW = w / m;
    const windowsH = Math.ceil(h / m / cellsPerWindow);
    const windowsW = Math.ceil(cellsW / cellsPerWindow);
    for (let f = 0; f < t; f++) {
      for (let k = 0; k < h * w; k++, at++) {
        const cell = Math.floor(k / (m * m));
        const inCell = k % (m * m);
        const cellRow = Math.floor(cell / cellsW);
        const cellCol = cell % cellsW;
        const row = cellRow * m + Math.floor(inCell / m);
        const col = cellCol * m + (inCell % m);
        const window = Math.floor(cellRow / cellsPerWindow) * windowsW + Math.floor(cellCol / cellsPerWindow);
        windowIds[at] = windowBase + f * windowsH * windowsW + window;
        frameIds[at] = frameBase + f;
        for (let j = 0; j < nf; j++) {
          // torch.outer in fp32: each angle is one rounded product.
          const angles = [Math.fround(row * inv[j]!), Math.fround(col * inv[j]!)];
          for (let axis = 0; axis < 2; axis++) {
            const c = Math.cos(angles[axis]!);
            const s = Math.sin(angles[axis]!);
            for (const half of [0, headDim / 2]) {
              cos[at * headDim + half + axis * nf + j] = c;
              sin[at * headDim + half + axis * nf + j] = s;
            }
          }
        }
      }
    }
    windowBase += t * windowsH * windowsW;
    frameBase += t;
  }
  return { cos, sin, windowIds, frameIds };
}

/** Additive mask [1, 1, P, P] from per-token segment ids: 0 within a segment, MASKED across. */
function segmentMask(g: Graph, ids: Float32Array): Tensor {
  const n = ids.length;
  const col = g.constant(ids, [n, 1]);
  const row = g.constant(ids, [1, n]);
  return ops.reshape(ops.where(ops.equal(col, row), g.constant(0, []), MASKED), [1, 1, n, n]);
}

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

function checkVisionInputs(config: Qwen25VLConfig, inputs: Qwen25VLVisionInputs): number {
  const v = config.vision;
  const patchDim = v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize;
  const px = inputs.pixelValues;
  const m = v.spatialMergeSize;
  for (const grid of inputs.imageGrids) {
    const [t, h, w] = grid;
    if (![t, h, w].every((n) => Number.isInteger(n) && n > 0) || h % m !== 0 || w % m !== 0) {
      throw new GraphError(
        `Qwen2.5-VL vision: image grid ${fmt(grid)} must be positive integers with h and w multiples of ` +
          `spatial_merge_size ${m}`,
      );
    }
  }
  const patches = inputs.imageGrids.reduce((n, [t, h, w]) => n + t * h * w, 0);
  if (px.rank !== 2 || px.shape[0] !== patches || px.shape[1] !== patchDim) {
    throw new GraphError(
      `Qwen2.5-VL vision: pixel_values must be [${patches}, ${patchDim}] for grids ` +
        `${inputs.imageGrids.map(fmt).join(" ")}, got ${px.dtype} ${fmt(px.shape)}`,
    );
  }
  if (patches === 0) throw new GraphError("Qwen2.5-VL vision: no image grids given");
  return patches;
}

/** The prefix under which the weights hold the vision tower: "visual." or "model.visual.". */
export function visionKeyPrefix(weights: GraphWeights): string {
  const found = ["visual.", "model.visual."].find((p) => weights.has(`${p}patch_embed.proj.weight`));
  if (found === undefined) {
    throw new WeightError(
      `${weights.source.description}: no Qwen2.5-VL vision tower: neither "visual.patch_embed.proj.weight" ` +
        `nor "model.visual.patch_embed.proj.weight" is present (pass keyPrefix for another layout)`,
      "visual.patch_embed.proj.weight",
    );
  }
  return found;
}
