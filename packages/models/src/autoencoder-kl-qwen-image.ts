import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { AutoencoderKLQwenImageConfig } from "./autoencoder-kl-qwen-image-config.js";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import { inScope, type ModuleContext, moduleContext } from "./layers.js";
import type { WeightSource } from "./weight-source.js";

/**
 * AutoencoderKLQwenImage on single images. The causal 3-D VAE sees one frame as [0, 0, x] along time, so every
 * 3×3×3 conv reduces exactly to a 2-D conv with its last temporal tap, 1×1×1 convs to their only tap, and the
 * `time_conv`s of the 3-D resamplers never run (diffusers skips them on the first chunk). The graphs are 2-D;
 * the 5-D weights are loaded as stored and sliced inside the graph, so they stay zero-copy in their file.
 */
export interface AutoencoderKLQwenImageOptions {
  /** Compute dtype; bf16 checkpoints are cast. Default float32. */
  dtype?: ComputeDType;
  /** Module-path prefix of the nodes. */
  scope?: string;
}

/**
 * Encoder: image [B, 3, 1, H, W] (or [B, 3, H, W]) in [−1, 1] → posterior mean [B, z_dim, 1, H/8, W/8] (same rank
 * as the input), before the per-channel normalisation (z = (mean − latentsMean) / latentsStd, the caller's job).
 * H and W must be multiples of 2^(stages − 1).
 */
export function buildAutoencoderKLQwenImageEncoder(
  g: Graph,
  config: AutoencoderKLQwenImageConfig,
  weights: WeightSource | GraphWeights,
  image: Tensor,
  options: AutoencoderKLQwenImageOptions = {},
): Tensor {
  const ctx = moduleContext(g, weights, options);
  const factor = 2 ** (config.dimMult.length - 1);
  const x = toFrame("image", image, config.inputChannels, factor);
  const build = () => {
    const dims = [1, ...config.dimMult].map((u) => u * config.baseDim);
    let h = conv3(ctx, "encoder.conv_in", ops.cast(x, ctx.weights.dtype), dims[0]!);
    let index = 0;
    for (let i = 0; i < config.dimMult.length; i++) {
      for (let j = 0; j < config.numResBlocks; j++) {
        h = residual(ctx, `encoder.down_blocks.${index++}`, h, dims[i + 1]!);
      }
      // Downsample (2-D or 3-D alike for one frame): pad right and bottom by one, 3×3 conv with stride 2.
      if (i < config.dimMult.length - 1) {
        h = conv2(ctx, `encoder.down_blocks.${index++}.resample.1`, h, h.shape[1]!, 3, 2, [0, 0, 1, 1]);
      }
    }
    h = midBlock(ctx, "encoder.mid_block", h);
    h = conv3(ctx, "encoder.conv_out", nn.silu(rmsNorm(ctx, "encoder.norm_out", h, 4)), 2 * config.zDim);
    const moments = conv1(ctx, "quant_conv", h, 2 * config.zDim);
    return ops.slice(moments, [0], [config.zDim], [1]);
  };
  const mean = inScope(g, options.scope, build);
  return fromFrame(mean, image.rank);
}

/**
 * Decoder: latent [B, z_dim, 1, h, w] (or [B, z_dim, h, w]), already un-normalised (z·latentsStd + latentsMean)
 * → image [B, 3, 1, 8h, 8w] (same rank as the input), clamped to [−1, 1] as diffusers' decode does.
 */
export function buildAutoencoderKLQwenImageDecoder(
  g: Graph,
  config: AutoencoderKLQwenImageConfig,
  weights: WeightSource | GraphWeights,
  latent: Tensor,
  options: AutoencoderKLQwenImageOptions = {},
): Tensor {
  const ctx = moduleContext(g, weights, options);
  const z = toFrame("latent", latent, config.zDim, 1);
  const build = () => {
    const mult = config.dimMult;
    const dims = [mult[mult.length - 1]!, ...[...mult].reverse()].map((u) => u * config.baseDim);
    let h = conv1(ctx, "post_quant_conv", ops.cast(z, ctx.weights.dtype), config.zDim);
    h = conv3(ctx, "decoder.conv_in", h, dims[0]!);
    h = midBlock(ctx, "decoder.mid_block", h);
    for (let i = 0; i < mult.length; i++) {
      const out = dims[i + 1]!;
      // Up blocks carry one more residual block than the encoder's stages; the first may change width.
      for (let j = 0; j <= config.numResBlocks; j++) {
        h = residual(ctx, `decoder.up_blocks.${i}.resnets.${j}`, h, out);
      }
      // Upsample (2-D or 3-D alike for one frame): nearest ×2, then a 3×3 conv that halves the channels.
      if (i < mult.length - 1) {
        const up = nn.upsampleNearest(h, 2);
        h = conv2(ctx, `decoder.up_blocks.${i}.upsamplers.0.resample.1`, up, out / 2, 3, 1, 1);
      }
    }
    h = nn.silu(rmsNorm(ctx, "decoder.norm_out", h, 4));
    h = conv3(ctx, "decoder.conv_out", h, 3);
    return ops.minimum(ops.maximum(h, -1), 1);
  };
  const image = inScope(g, options.scope, build);
  return fromFrame(image, latent.rank);
}

/** [B, C, 1, H, W] or [B, C, H, W] → [B, C, H, W], checking channels and the size multiple. */
function toFrame(what: string, x: Tensor, channels: number, multiple: number): Tensor {
  const five = x.rank === 5;
  const [b, c, t, h, w] = five ? x.shape : [x.shape[0], x.shape[1], 1, x.shape[2], x.shape[3]];
  if ((x.rank !== 4 && !five) || c !== channels || t !== 1 || h! % multiple !== 0 || w! % multiple !== 0) {
    throw new GraphError(
      `AutoencoderKLQwenImage: ${what} has shape [${x.shape.join(",")}], expected [B, ${channels}, 1, H, W] ` +
        `(one frame; or [B, ${channels}, H, W])${multiple > 1 ? ` with H and W multiples of ${multiple}` : ""}`,
    );
  }
  return five ? ops.reshape(x, [b!, c!, h!, w!]) : x;
}

function fromFrame(x: Tensor, rank: number): Tensor {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  return rank === 5 ? ops.reshape(x, [b, c, 1, h, w]) : x;
}

/** A causal 3×3×3 conv on one frame: the 2-D conv with the last temporal tap W[:, :, 2], padding 1. */
function conv3(ctx: ModuleContext, name: string, x: Tensor, outChannels: number): Tensor {
  return x.graph.scope(name, () => {
    const inChannels = x.shape[1]!;
    const w5 = ctx.weights.get(`${name}.weight`, [outChannels, inChannels, 3, 3, 3]);
    const w = ops.reshape(ops.slice(w5, [2], [3], [2]), [outChannels, inChannels, 3, 3]);
    return ops.conv2d(x, w, ctx.weights.get(`${name}.bias`, [outChannels]), { padding: 1 });
  });
}

/** A 1×1×1 conv on one frame. */
function conv1(ctx: ModuleContext, name: string, x: Tensor, outChannels: number): Tensor {
  return x.graph.scope(name, () => {
    const inChannels = x.shape[1]!;
    const w5 = ctx.weights.get(`${name}.weight`, [outChannels, inChannels, 1, 1, 1]);
    const w = ops.reshape(w5, [outChannels, inChannels, 1, 1]);
    return ops.conv2d(x, w, ctx.weights.get(`${name}.bias`, [outChannels]));
  });
}

/** A plain Conv2d with [out, in, k, k] weights. */
function conv2(
  ctx: ModuleContext,
  name: string,
  x: Tensor,
  outChannels: number,
  kernel: number,
  stride: number,
  padding: number | readonly [number, number, number, number],
): Tensor {
  return x.graph.scope(name, () => {
    const w = ctx.weights.get(`${name}.weight`, [outChannels, x.shape[1]!, kernel, kernel]);
    return ops.conv2d(x, w, ctx.weights.get(`${name}.bias`, [outChannels]), { stride, padding });
  });
}

/**
 * QwenImageRMS_norm over channels: F.normalize(x, dim=1)·√C·γ, i.e. x / max(‖x‖, 1e-12) · √C · γ. `gammaRank`
 * is the stored γ's rank: [C,1,1,1] for the 3-D norms, [C,1,1] inside the attention block. Computed in fp32.
 */
function rmsNorm(ctx: ModuleContext, name: string, x: Tensor, gammaRank: 3 | 4): Tensor {
  return x.graph.scope(name, () => {
    const c = x.shape[1]!;
    const gamma = ctx.weights.get(`${name}.gamma`, [c, ...new Array<number>(gammaRank - 1).fill(1)]);
    const xf = ops.cast(x, "float32");
    const norm = ops.sqrt(ops.reduceSum(ops.mul(xf, xf), [1], true));
    const y = ops.mul(ops.div(xf, ops.maximum(norm, 1e-12)), Math.sqrt(c));
    return ops.mul(ops.cast(y, x.dtype), ops.reshape(gamma, [c, 1, 1]));
  });
}

/** QwenImageResidualBlock: shortcut(x) + conv2(SiLU(RMS(conv1(SiLU(RMS(x)))))), 1×1×1 shortcut on a width change. */
function residual(ctx: ModuleContext, name: string, x: Tensor, out: number): Tensor {
  return x.graph.scope(name, () => {
    let h = conv3(ctx, `${name}.conv1`, nn.silu(rmsNorm(ctx, `${name}.norm1`, x, 4)), out);
    h = conv3(ctx, `${name}.conv2`, nn.silu(rmsNorm(ctx, `${name}.norm2`, h, 4)), out);
    const shortcut = x.shape[1] === out ? x : conv1(ctx, `${name}.conv_shortcut`, x, out);
    return ops.add(shortcut, h);
  });
}

function midBlock(ctx: ModuleContext, name: string, x: Tensor): Tensor {
  const c = x.shape[1]!;
  let h = residual(ctx, `${name}.resnets.0`, x, c);
  h = attention(ctx, `${name}.attentions.0`, h);
  return residual(ctx, `${name}.resnets.1`, h, c);
}

/** QwenImageAttentionBlock: RMS → 1×1 to_qkv → one head over the H·W positions (head dim C) → 1×1 proj, residual. */
function attention(ctx: ModuleContext, name: string, x: Tensor): Tensor {
  return x.graph.scope(name, () => {
    const [b, c, hgt, wid] = x.shape as [number, number, number, number];
    const qkv = conv2(ctx, `${name}.to_qkv`, rmsNorm(ctx, `${name}.norm`, x, 3), 3 * c, 1, 1, 0);
    // [B, 3C, HW] → [B, HW, 3C], then q, k, v are consecutive channel blocks.
    const tokens = ops.transpose(ops.reshape(qkv, [b, 3 * c, hgt * wid]), [0, 2, 1]);
    const [q, k, v] = nn.split(tokens, [c, c, c], 2) as [Tensor, Tensor, Tensor];
    const out = nn.scaledDotProductAttention(q, k, v);
    const spatial = ops.reshape(ops.transpose(out, [0, 2, 1]), [b, c, hgt, wid]);
    return ops.add(x, conv2(ctx, `${name}.proj`, spatial, c, 1, 1, 0));
  });
}
