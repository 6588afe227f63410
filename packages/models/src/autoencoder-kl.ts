import { type Graph, GraphError, nn, ops, type Tensor } from "@edit-r1/engine";
import type { AutoencoderKLConfig } from "./autoencoder-kl-config.js";
import type { ComputeDType, GraphWeights } from "./graph-weights.js";
import { inScope, linear, type ModuleContext, moduleContext } from "./layers.js";
import type { WeightSource } from "./weight-source.js";

export interface AutoencoderKLOptions {
  /** Compute dtype; the FLUX VAE is meant to run in float32 (bf16 checkpoints are cast up). Default float32. */
  dtype?: ComputeDType;
  /** Module-path prefix of the nodes. */
  scope?: string;
}

const EPS = 1e-6;

/**
 * AutoencoderKL encoder: image [B, in_channels, H, W] in [−1, 1] → the posterior mean
 * [B, latent_channels, H/f, W/f] with f = 2^(blocks−1), before any scaling or shift (the logvar half is dropped,
 * as FLUX and the Edit-R1 pipelines use the mean, not a sample).
 */
export function buildAutoencoderKLEncoder(
  g: Graph,
  config: AutoencoderKLConfig,
  weights: WeightSource | GraphWeights,
  image: Tensor,
  options: AutoencoderKLOptions = {},
): Tensor {
  const ctx = moduleContext(g, weights, options);
  checkImage("image", image, config.inChannels, 2 ** (config.blockOutChannels.length - 1));
  const build = () => {
    const blocks = config.blockOutChannels;
    let h = conv(ctx, "encoder.conv_in", ops.cast(image, ctx.weights.dtype), blocks[0]!, 3);
    blocks.forEach((out, i) => {
      for (let j = 0; j < config.layersPerBlock; j++) {
        h = resnet(ctx, config, `encoder.down_blocks.${i}.resnets.${j}`, h, out);
      }
      // The encoder's downsampler pads only right and bottom, then convolves with stride 2 and no padding.
      if (i < blocks.length - 1) {
        h = conv(ctx, `encoder.down_blocks.${i}.downsamplers.0.conv`, h, out, 3, {
          stride: 2,
          padding: [0, 0, 1, 1],
        });
      }
    });
    h = midBlock(ctx, config, "encoder.mid_block", h);
    h = nn.silu(norm(ctx, config, "encoder.conv_norm_out", h));
    let moments = conv(ctx, "encoder.conv_out", h, 2 * config.latentChannels, 3);
    if (config.useQuantConv) moments = conv(ctx, "quant_conv", moments, 2 * config.latentChannels, 1);
    return ops.slice(moments, [0], [config.latentChannels], [1]);
  };
  return inScope(g, options.scope, build);
}

/**
 * AutoencoderKL decoder: latent [B, latent_channels, h, w] (already un-scaled: z / scaling + shift) → image
 * [B, out_channels, h·f, w·f], unclamped, nominally in [−1, 1].
 */
export function buildAutoencoderKLDecoder(
  g: Graph,
  config: AutoencoderKLConfig,
  weights: WeightSource | GraphWeights,
  latent: Tensor,
  options: AutoencoderKLOptions = {},
): Tensor {
  const ctx = moduleContext(g, weights, options);
  checkImage("latent", latent, config.latentChannels, 1);
  const build = () => {
    const blocks = config.blockOutChannels;
    const reversed = [...blocks].reverse();
    let h = ops.cast(latent, ctx.weights.dtype);
    if (config.usePostQuantConv) h = conv(ctx, "post_quant_conv", h, config.latentChannels, 1);
    h = conv(ctx, "decoder.conv_in", h, reversed[0]!, 3);
    h = midBlock(ctx, config, "decoder.mid_block", h);
    reversed.forEach((out, i) => {
      // Decoder up blocks carry one more resnet than the encoder's down blocks.
      for (let j = 0; j <= config.layersPerBlock; j++) {
        h = resnet(ctx, config, `decoder.up_blocks.${i}.resnets.${j}`, h, out);
      }
      if (i < reversed.length - 1) {
        h = conv(ctx, `decoder.up_blocks.${i}.upsamplers.0.conv`, nn.upsampleNearest(h, 2), out, 3);
      }
    });
    h = nn.silu(norm(ctx, config, "decoder.conv_norm_out", h));
    return conv(ctx, "decoder.conv_out", h, config.outChannels, 3);
  };
  return inScope(g, options.scope, build);
}

function checkImage(what: string, x: Tensor, channels: number, multiple: number): void {
  const [, c, h, w] = x.shape;
  if (x.rank !== 4 || c !== channels || h! % multiple !== 0 || w! % multiple !== 0) {
    throw new GraphError(
      `AutoencoderKL: ${what} has shape [${x.shape.join(",")}], expected [B, ${channels}, H, W]` +
        (multiple > 1 ? ` with H and W multiples of ${multiple}` : ""),
    );
  }
}

interface ConvOptions {
  stride?: number;
  padding?: number | readonly [number, number, number, number];
}

/** Conv2d `${name}.weight` [out, in, k, k] + bias; "same" padding for odd k unless given. */
function conv(
  ctx: ModuleContext,
  name: string,
  x: Tensor,
  outChannels: number,
  kernel: number,
  options: ConvOptions = {},
): Tensor {
  return x.graph.scope(name, () => {
    const w = ctx.weights.get(`${name}.weight`, [outChannels, x.shape[1]!, kernel, kernel]);
    const b = ctx.weights.get(`${name}.bias`, [outChannels]);
    return ops.conv2d(x, w, b, { stride: options.stride ?? 1, padding: options.padding ?? (kernel - 1) / 2 });
  });
}

function norm(ctx: ModuleContext, config: AutoencoderKLConfig, name: string, x: Tensor): Tensor {
  const c = x.shape[1]!;
  return x.graph.scope(name, () =>
    nn.groupNorm(x, config.normNumGroups, {
      weight: ctx.weights.get(`${name}.weight`, [c]),
      bias: ctx.weights.get(`${name}.bias`, [c]),
      eps: EPS,
    }),
  );
}

/** ResnetBlock2D without time embedding: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), 1×1 shortcut on a width change. */
function resnet(
  ctx: ModuleContext,
  config: AutoencoderKLConfig,
  name: string,
  x: Tensor,
  out: number,
): Tensor {
  return x.graph.scope(name, () => {
    let h = conv(ctx, `${name}.conv1`, nn.silu(norm(ctx, config, `${name}.norm1`, x)), out, 3);
    h = conv(ctx, `${name}.conv2`, nn.silu(norm(ctx, config, `${name}.norm2`, h)), out, 3);
    const shortcut = x.shape[1] === out ? x : conv(ctx, `${name}.conv_shortcut`, x, out, 1);
    return ops.add(shortcut, h);
  });
}

function midBlock(ctx: ModuleContext, config: AutoencoderKLConfig, name: string, x: Tensor): Tensor {
  const c = x.shape[1]!;
  let h = resnet(ctx, config, `${name}.resnets.0`, x, c);
  if (config.midBlockAddAttention) h = spatialAttention(ctx, config, `${name}.attentions.0`, h);
  return resnet(ctx, config, `${name}.resnets.1`, h, c);
}

/** Single-head self-attention over the H·W positions, with GroupNorm in front and a residual connection. */
function spatialAttention(ctx: ModuleContext, config: AutoencoderKLConfig, name: string, x: Tensor): Tensor {
  return x.graph.scope(name, () => {
    const [b, c, hgt, wid] = x.shape as [number, number, number, number];
    const normed = norm(ctx, config, `${name}.group_norm`, x);
    const tokens = ops.transpose(ops.reshape(normed, [b, c, hgt * wid]), [0, 2, 1]);
    const q = linear(ctx, `${name}.to_q`, tokens, c);
    const k = linear(ctx, `${name}.to_k`, tokens, c);
    const v = linear(ctx, `${name}.to_v`, tokens, c);
    const out = linear(ctx, `${name}.to_out.0`, nn.scaledDotProductAttention(q, k, v), c);
    return ops.add(x, ops.reshape(ops.transpose(out, [0, 2, 1]), [b, c, hgt, wid]));
  });
}
