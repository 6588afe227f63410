import { nn, ops, type Tensor } from "@edit-r1/engine";
import type { ComputeDType } from "./graph-weights.js";
import { linear, type ModuleContext } from "./layers.js";

/**
 * Embeddings the diffusion transformers share: sinusoidal timestep features and the MLP that embeds them
 * (diffusers' `Timesteps` and `TimestepEmbedding`), and multi-axis rotary position tables (FLUX's `EmbedND`,
 * which Qwen-Image's MSRoPE reproduces from its own position ids).
 */

/** Width of the sinusoidal timestep features of FLUX and Qwen-Image (diffusers `Timesteps(256, …)`). */
export const TIMESTEP_CHANNELS = 256;
const ROPE_THETA = 10000;

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
 * The 256-d features of σ [B] (in [0, 1]) for a model computing in `dtype`. σ is rounded to the compute dtype
 * and the sinusoid is built in fp32, then cast back, as diffusers does. Where the ×1000 happens differs between
 * the models, and so does the fp16/bf16 rounding: FLUX multiplies σ by 1000 in the compute dtype (`"input"`),
 * Qwen-Image scales the angles (`Timesteps(scale=1000)`, `"angles"`).
 */
export function timestepFeatures(sigma: Tensor, dtype: ComputeDType, scaleAt: "input" | "angles"): Tensor {
  const rounded = ops.cast(sigma, dtype);
  if (scaleAt === "input") {
    return ops.cast(
      sinusoidalEmbedding(ops.cast(ops.mul(rounded, 1000), "float32"), TIMESTEP_CHANNELS),
      dtype,
    );
  }
  return ops.cast(sinusoidalEmbedding(ops.cast(rounded, "float32"), TIMESTEP_CHANNELS, 1000), dtype);
}

/**
 * Linear → SiLU → Linear to `width`, weights `${name}.linear_1` and `.linear_2`: diffusers' `TimestepEmbedding`
 * (timestep and guidance embedders) and `PixArtAlphaTextProjection(act_fn="silu")` (FLUX's pooled-text embedder).
 */
export function timestepEmbedding(ctx: ModuleContext, name: string, features: Tensor, width: number): Tensor {
  return linear(ctx, `${name}.linear_2`, nn.silu(linear(ctx, `${name}.linear_1`, features, width)), width);
}

/** cos/sin rotary tables [L, Σd_i], float32, laid out for `nn.applyRotary(…, interleaved = true)`. */
export interface RotaryTables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * FLUX's 3-axis rotary tables for ids [L, 3]: axis i uses angles id_i · θ^(−2j/d_i), j < d_i/2, each angle
 * repeated for both members of its pair; the axes are concatenated to [L, Σd_i]. Always float32. Qwen-Image's
 * MSRoPE is the same function of its (frame, row, column) ids.
 */
export function fluxRotaryEmbedding(ids: Tensor, axesDims: readonly number[]): RotaryTables {
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
