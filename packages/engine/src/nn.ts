import type { DType } from "./dtype.js";
import { type Graph, GraphError, type Tensor } from "./graph.js";
import * as ops from "./ops.js";

/**
 * Neural-network building blocks composed from the primitives in `ops.ts`, so autodiff needs no rules of
 * its own for them. Where onnxruntime has a fusion for a pattern (LayerNorm, RMSNorm, Gelu), the
 * composite is written in that pattern's exact node order so the optimizer can fuse it. That fusion only
 * happens in forward-only graphs (a backward pass reads the intermediates), so float32 LayerNorm and GELU
 * use the single ONNX ops instead, with their own VJP rules.
 */

function fail(what: string, g: Graph, message: string): never {
  const where = g.currentScope ? ` at "${g.currentScope}"` : "";
  throw new GraphError(`${what}${where}: ${message}`);
}

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

/** Casts to `dtype` when needed (e.g. a bfloat16 weight used by a float32 computation). */
function as(t: Tensor, dtype: DType): Tensor {
  return t.dtype === dtype ? t : ops.cast(t, dtype);
}

/** Swaps the last two axes. */
export function transposeLast2(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return ops.transpose(x, perm);
}

/**
 * y = x Wᵀ + b, with `weight` [out, in] as PyTorch stores it. Weights of another float dtype (bf16
 * checkpoints) are cast to x's dtype inside the graph.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const g = x.graph;
  if (weight.rank !== 2) fail("linear", g, `weight must be [out, in], got ${fmt(weight.shape)}`);
  const [out, inF] = weight.shape as [number, number];
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF) {
    fail(
      "linear",
      g,
      `input ${fmt(x.shape)} does not end in the weight's in-features ${inF} (weight [${out},${inF}])`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== out)) {
    fail("linear", g, `bias must be [${out}], got ${fmt(bias.shape)}`);
  }
  const x2 = x.rank === 1 ? ops.reshape(x, [1, inF]) : x;
  let y = ops.matmul(x2, ops.transpose(as(weight, x.dtype), [1, 0]));
  if (bias) y = ops.add(y, as(bias, x.dtype));
  return x.rank === 1 ? ops.reshape(y, [out]) : y;
}

/** The trainable low-rank factors of one LoRA-adapted linear layer. */
export interface LoraFactors {
  /** [rank, in]: PEFT's `lora_A.weight`. */
  A: Tensor;
  /** [out, rank]: PEFT's `lora_B.weight`. */
  B: Tensor;
  /** alpha / rank. */
  scale: number;
}

/** PEFT / diffusers key names of a module's LoRA factors, e.g. "transformer_blocks.0.attn.to_q.lora_A.weight". */
export function loraKeys(module: string): { A: string; B: string } {
  return { A: `${module}.lora_A.weight`, B: `${module}.lora_B.weight` };
}

/**
 * Declares a module's LoRA factors as graph INPUTS named with PEFT keys, so the trainer feeds them each
 * step (they are what changes) while the base weight stays a frozen initializer. `alpha` defaults to
 * `rank` (scale 1).
 */
export function loraInputs(
  g: Graph,
  module: string,
  shape: { inFeatures: number; outFeatures: number; rank: number; alpha?: number; dtype?: DType },
): LoraFactors {
  const { inFeatures, outFeatures, rank } = shape;
  if (![inFeatures, outFeatures, rank].every((d) => Number.isInteger(d) && d > 0)) {
    fail("loraInputs", g, `"${module}": in/out features and rank must be positive integers`);
  }
  const keys = loraKeys(module);
  const dtype = shape.dtype ?? "float32";
  return {
    A: g.input(keys.A, dtype, [rank, inFeatures]),
    B: g.input(keys.B, dtype, [outFeatures, rank]),
    scale: (shape.alpha ?? rank) / rank,
  };
}

/** y = x Wᵀ + b + scale · (x Aᵀ) Bᵀ: a frozen linear layer plus its low-rank update. */
export function loraLinear(x: Tensor, weight: Tensor, bias: Tensor | undefined, lora: LoraFactors): Tensor {
  const g = x.graph;
  const [out, inF] = weight.shape as [number, number];
  const [r, ain] = lora.A.shape as [number, number];
  if (
    lora.A.rank !== 2 ||
    lora.B.rank !== 2 ||
    ain !== inF ||
    lora.B.shape[0] !== out ||
    lora.B.shape[1] !== r
  ) {
    fail(
      "loraLinear",
      g,
      `factors A ${fmt(lora.A.shape)} and B ${fmt(lora.B.shape)} do not fit weight [${out},${inF}] (want A [r,${inF}], B [${out},r])`,
    );
  }
  const base = linear(x, weight, bias);
  const down = linear(x, lora.A);
  const up = linear(down, lora.B);
  return ops.add(base, lora.scale === 1 ? up : ops.mul(up, lora.scale));
}

export const silu = (x: Tensor): Tensor => ops.mul(x, ops.sigmoid(x));

/**
 * GELU, exact (erf) or with PyTorch's tanh approximation (`approximate: "tanh"`, FLUX's choice). float32
 * uses the ONNX Gelu op (one kernel, and a backward that needs only x); other dtypes, which onnxruntime's
 * Gelu kernel lacks, use the composite.
 */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  if (x.dtype === "float32") return ops.gelu(x, approximate);
  if (approximate === "tanh") {
    const cube = ops.mul(ops.mul(x, x), x);
    const inner = ops.mul(ops.add(x, ops.mul(cube, 0.044715)), Math.sqrt(2 / Math.PI));
    return ops.mul(ops.mul(x, 0.5), ops.add(ops.tanh(inner), 1));
  }
  return ops.mul(ops.mul(x, ops.add(ops.erf(ops.div(x, Math.SQRT2)), 1)), 0.5);
}

export interface NormOptions {
  weight?: Tensor;
  bias?: Tensor;
  eps?: number;
}

function affine(y: Tensor, o: NormOptions): Tensor {
  let out = y;
  if (o.weight) out = ops.mul(out, as(o.weight, y.dtype));
  if (o.bias) out = ops.add(out, as(o.bias, y.dtype));
  return out;
}

/**
 * LayerNorm over the last axis (biased variance, like PyTorch); affine when weight/bias are given. eps 1e-5.
 * float32 uses the ONNX LayerNormalization op: one kernel, and it hands the mean and 1/σ to the backward
 * pass (the composite's backward is three times as many elementwise passes). Other dtypes use the
 * composite, which onnxruntime fuses in forward-only graphs.
 */
export function layerNorm(x: Tensor, options: NormOptions = {}): Tensor {
  if (x.dtype !== "float32" || x.rank === 0) return layerNormComposite(x, options);
  const d = x.shape[x.rank - 1]!;
  const scale = options.weight
    ? as(options.weight, x.dtype)
    : x.graph.constant(new Float32Array(d).fill(1), [d], x.dtype);
  const bias = options.bias && as(options.bias, x.dtype);
  return ops.layerNormalization(x, scale, bias, { axis: -1, epsilon: options.eps ?? 1e-5 }).y;
}

/** The primitive-op LayerNorm, in the node order of onnxruntime's LayerNorm fusion. */
function layerNormComposite(x: Tensor, options: NormOptions): Tensor {
  const mean = ops.reduceMean(x, [-1], true);
  const d = ops.sub(x, mean);
  const variance = ops.reduceMean(ops.pow(d, 2), [-1], true);
  const y = ops.div(d, ops.sqrt(ops.add(variance, options.eps ?? 1e-5)));
  return affine(y, options);
}

/**
 * RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · weight, computed in float32 even for 16-bit
 * inputs (as diffusers does), then cast back. eps 1e-6.
 */
export function rmsNorm(x: Tensor, options: { weight?: Tensor; eps?: number } = {}): Tensor {
  const xf = as(x, "float32");
  const ms = ops.reduceMean(ops.pow(xf, 2), [-1], true);
  let y = ops.div(xf, ops.sqrt(ops.add(ms, options.eps ?? 1e-6)));
  if (options.weight) y = ops.mul(y, as(options.weight, "float32"));
  return as(y, x.dtype);
}

/**
 * GroupNorm over [N, C, ...spatial]: statistics per (sample, group of C/groups channels); per-channel
 * affine when weight/bias ([C]) are given. eps 1e-5.
 */
export function groupNorm(x: Tensor, groups: number, options: NormOptions = {}): Tensor {
  const g = x.graph;
  const [n, c] = x.shape as [number, number];
  if (x.rank < 2 || !Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    fail("groupNorm", g, `${groups} groups do not divide the channels of ${fmt(x.shape)}`);
  }
  const grouped = ops.reshape(x, [n, groups, -1]);
  // The composite: a LayerNormalization scale would be a ones literal the size of a whole group.
  const y = ops.reshape(layerNormComposite(grouped, { eps: options.eps ?? 1e-5 }), x.shape);
  const perChannel = (t: Tensor | undefined) => t && ops.reshape(t, [c, ...x.shape.slice(2).map(() => 1)]);
  return affine(y, { weight: perChannel(options.weight), bias: perChannel(options.bias) });
}

export interface AttentionOptions {
  /** Additive mask broadcastable to [B, heads, Lq, Lk] (0 to keep, a large negative number to drop). */
  mask?: Tensor;
  /** Score scale; 1/√D by default. */
  scale?: number;
  /**
   * Heads per chunk (q/k/v [..., heads, L, D]): attention runs over `headChunk` heads at a time, one chunk
   * after another, so one chunk's scores [..., headChunk, Lq, Lk] are alive at once instead of all heads'.
   * Each chunk is its own recompute region, so a backward pass recomputes a chunk's scores in that chunk's
   * own backward instead of keeping every chunk's softmax (nested inside a per-block region too). Same
   * result as unchunked; undefined or ≥ heads: unchunked.
   */
  headChunk?: number;
}

/** softmax(q kᵀ · scale + mask) v over q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv]. */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Tensor {
  const g = q.graph;
  const d = q.shape[q.rank - 1]!;
  if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank || k.shape[k.rank - 1] !== d) {
    fail("attention", g, `q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not fit together`);
  }
  if (k.shape[k.rank - 2] !== v.shape[v.rank - 2]) {
    fail("attention", g, `k ${fmt(k.shape)} and v ${fmt(v.shape)} differ in sequence length`);
  }
  const chunk = options.headChunk;
  if (chunk === undefined) return attentionCore(q, k, v, options);
  if (!Number.isInteger(chunk) || chunk < 1) {
    fail("attention", g, `headChunk must be a positive integer (heads per chunk), got ${chunk}`);
  }
  const heads = q.rank >= 3 ? q.shape[q.rank - 3]! : 1;
  if (chunk >= heads) return attentionCore(q, k, v, options);
  return headChunkedAttention(q, k, v, chunk, options);
}

function attentionCore(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const d = q.shape[q.rank - 1]!;
  // Scaling q (L·D values) is cheaper than scaling the scores (L·L values).
  const qs = ops.mul(q, options.scale ?? 1 / Math.sqrt(d));
  let scores = ops.matmul(qs, transposeLast2(k));
  if (options.mask) scores = ops.add(scores, as(options.mask, scores.dtype));
  return ops.matmul(ops.softmax(scores, -1), v);
}

/**
 * Attention `chunk` heads at a time. q, k and v are flattened per head and packed into one tensor
 * [..., H, Lq·D + Lk·D + Lk·Dv], and each chunk slices its heads from it: the backward then sums one gradient
 * per chunk that depends on all three of the chunk's gradients, so onnxruntime's execution order (a depth-first
 * walk from the outputs, which finishes each input's subgraph before the next) finishes one chunk's backward
 * before it starts the next, and never holds several chunks' softmax. (With q, k and v sliced separately, the
 * walk computes every chunk's dq first and keeps each chunk's softmax alive for the dk and dv that follow.)
 * The forward needs no such help: the chunks meet in one Concat, whose inputs the walk computes one by one.
 */
function headChunkedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  chunk: number,
  options: AttentionOptions,
): Tensor {
  const g = q.graph;
  const axis = q.rank - 3;
  const heads = q.shape[axis]!;
  for (const [name, t] of [
    ["k", k],
    ["v", v],
  ] as const) {
    if (!sameDims(t.shape.slice(0, -2), q.shape.slice(0, -2))) {
      fail(
        "attention",
        g,
        `headChunk needs q, k and v with the same leading axes; q ${fmt(q.shape)}, ${name} ${fmt(t.shape)}`,
      );
    }
  }
  const mask = options.mask;
  const maskHeads = mask && mask.rank >= 3 ? mask.shape[mask.rank - 3]! : 1;
  const maskAxis = mask ? mask.rank - 3 : 0;
  const flat = (t: Tensor) =>
    ops.reshape(t, [...t.shape.slice(0, -2), t.shape[t.rank - 2]! * t.shape[t.rank - 1]!]);
  const parts = [q, k, v];
  const widths = parts.map((t) => t.shape[t.rank - 2]! * t.shape[t.rank - 1]!);
  const packed = ops.concat(parts.map(flat), -1);
  const outs: Tensor[] = [];
  for (let start = 0; start < heads; start += chunk) {
    const end = Math.min(start + chunk, heads);
    outs.push(
      g.recompute(() => {
        const piece = ops.slice(packed, [start], [end], [axis]);
        const [qc, kc, vc] = split(piece, widths, -1).map((t, i) =>
          ops.reshape(t, [...t.shape.slice(0, -1), ...parts[i]!.shape.slice(-2)]),
        ) as [Tensor, Tensor, Tensor];
        const m = mask && maskHeads > 1 ? ops.slice(mask, [start], [end], [maskAxis]) : mask;
        return attentionCore(qc, kc, vc, { ...options, ...(m ? { mask: m } : {}) });
      }),
    );
  }
  return ops.concat(outs, axis);
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Rotary position embedding on x [..., L, D] with cos/sin broadcastable to [L, D] (see `rotaryTables`).
 * `interleaved` (FLUX, Mistral-style complex pairs): rotates adjacent pairs (x₂ₖ, x₂ₖ₊₁), and cos/sin are
 * repeat-interleaved. Otherwise rotate-half (Llama/Qwen): pairs (xₖ, xₖ₊D/2), cos/sin repeated in halves.
 */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor, interleaved: boolean): Tensor {
  const g = x.graph;
  const d = x.shape[x.rank - 1]!;
  if (d % 2 !== 0) fail("applyRotary", g, `the last axis of ${fmt(x.shape)} must be even`);
  let rotated: Tensor;
  if (interleaved) {
    const pairs = ops.reshape(x, [...x.shape.slice(0, -1), d / 2, 2]);
    const [even, odd] = split(pairs, [1, 1], -1) as [Tensor, Tensor];
    rotated = ops.reshape(ops.concat([ops.neg(odd), even], -1), x.shape);
  } else {
    const [first, second] = chunk(x, 2, -1) as [Tensor, Tensor];
    rotated = ops.concat([ops.neg(second), first], -1);
  }
  return ops.add(ops.mul(x, as(cos, x.dtype)), ops.mul(rotated, as(sin, x.dtype)));
}

/**
 * cos/sin tables [L, dim] for positions (one per token) with frequencies theta^(−2j/dim), computed in
 * float64 and rounded to float32 (as diffusers does), laid out for `applyRotary`'s convention.
 */
export function rotaryTables(
  positions: ArrayLike<number>,
  dim: number,
  options: { theta?: number; interleaved: boolean },
): { cos: Float32Array; sin: Float32Array } {
  if (dim % 2 !== 0 || dim < 2) throw new GraphError(`rotaryTables: dim must be even and ≥ 2, got ${dim}`);
  const theta = options.theta ?? 10000;
  const half = dim / 2;
  const cos = new Float32Array(positions.length * dim);
  const sin = new Float32Array(positions.length * dim);
  for (let p = 0; p < positions.length; p++) {
    for (let j = 0; j < half; j++) {
      const angle = positions[p]! * theta ** ((-2 * j) / dim);
      const [a, b] = options.interleaved ? [2 * j, 2 * j + 1] : [j, j + half];
      cos[p * dim + a] = cos[p * dim + b] = Math.cos(angle);
      sin[p * dim + a] = sin[p * dim + b] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Splits `x` along `axis` into consecutive pieces of the given sizes (which must add up to the axis). */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const g = x.graph;
  const ax = axis < 0 ? axis + x.rank : axis;
  const total = sizes.reduce((a, b) => a + b, 0);
  if (ax < 0 || ax >= x.rank || total !== x.shape[ax] || sizes.some((s) => !Number.isInteger(s) || s < 0)) {
    fail("split", g, `sizes ${fmt(sizes)} do not add up to axis ${axis} of ${fmt(x.shape)}`);
  }
  const out: Tensor[] = [];
  let start = 0;
  for (const s of sizes) {
    out.push(ops.slice(x, [start], [start + s], [ax]));
    start += s;
  }
  return out;
}

/** Splits `x` into `n` equal pieces along `axis`. */
export function chunk(x: Tensor, n: number, axis: number): Tensor[] {
  const ax = axis < 0 ? axis + x.rank : axis;
  const dim = x.shape[ax];
  if (dim === undefined || !Number.isInteger(n) || n < 1 || dim % n !== 0) {
    fail("chunk", x.graph, `axis ${axis} of ${fmt(x.shape)} does not split into ${n} equal chunks`);
  }
  return split(x, new Array<number>(n).fill(dim / n), ax);
}

/**
 * Constant padding. `pads` is in ONNX order: [begin₀ … beginₙ₋₁, end₀ … endₙ₋₁] for all n axes, all ≥ 0.
 * Built from Concat with broadcast constants, so its gradient is a Slice.
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  const g = x.graph;
  if (pads.length !== 2 * x.rank || pads.some((p) => !Number.isInteger(p) || p < 0)) {
    fail("pad", g, `pads ${fmt(pads)} must hold 2×${x.rank} non-negative integers (ONNX order)`);
  }
  let y = x;
  for (let axis = 0; axis < x.rank; axis++) {
    const before = pads[axis]!;
    const after = pads[axis + x.rank]!;
    if (before === 0 && after === 0) continue;
    const fill = (n: number) =>
      ops.expand(
        g.constant(value, [], y.dtype),
        y.shape.map((d, i) => (i === axis ? n : d)),
      );
    const parts = [...(before ? [fill(before)] : []), y, ...(after ? [fill(after)] : [])];
    y = ops.concat(parts, axis);
  }
  return y;
}

/** Nearest-neighbour upsampling of the spatial axes of [N, C, H, W] by an integer factor (the VAEs' ×2). */
export function upsampleNearest(x: Tensor, factor = 2): Tensor {
  const g = x.graph;
  if (x.rank !== 4 || !Number.isInteger(factor) || factor < 1) {
    fail("upsampleNearest", g, `needs NCHW input and an integer factor, got ${fmt(x.shape)} ×${factor}`);
  }
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const spread = ops.expand(ops.reshape(x, [n, c, h, 1, w, 1]), [n, c, h, factor, w, factor]);
  return ops.reshape(spread, [n, c, h * factor, w * factor]);
}
