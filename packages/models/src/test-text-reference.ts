/**
 * Plain-loop float64 forward passes of transformers' CLIPTextModel and T5EncoderModel, written from the
 * transformers source semantics (modeling_clip.py, modeling_t5.py) independently of the graph builders, so
 * the builders are checked against a second implementation. Tests only; tiny sizes.
 */

export type RefWeights = ReadonlyMap<string, ArrayLike<number>>;

type Mat = Float64Array<ArrayBuffer>; // row-major

function w(weights: RefWeights, key: string): ArrayLike<number> {
  const v = weights.get(key);
  if (!v) throw new Error(`reference: missing weight ${key}`);
  return v;
}

/** y[n, out] = x[n, in] · Wᵀ + b, W stored [out, in]. */
function dense(
  x: Mat,
  n: number,
  inF: number,
  W: ArrayLike<number>,
  outF: number,
  b?: ArrayLike<number>,
): Mat {
  const y = new Float64Array(n * outF);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * W[o * inF + i]!;
      y[r * outF + o] = s;
    }
  }
  return y;
}

function layerNorm(
  x: Mat,
  n: number,
  d: number,
  g: ArrayLike<number>,
  b: ArrayLike<number>,
  eps: number,
): Mat {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - mean) ** 2;
    v /= d;
    for (let i = 0; i < d; i++) y[r * d + i] = ((x[r * d + i]! - mean) / Math.sqrt(v + eps)) * g[i]! + b[i]!;
  }
  return y;
}

function rmsNorm(x: Mat, n: number, d: number, g: ArrayLike<number>, eps: number): Mat {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[r * d + i]! ** 2;
    ms /= d;
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! / Math.sqrt(ms + eps)) * g[i]!;
  }
  return y;
}

/** Multi-head attention over one sequence; q/k/v are [L, heads·dh]; bias(h, i, j) is added to the scores. */
function attention(
  q: Mat,
  k: Mat,
  v: Mat,
  L: number,
  heads: number,
  dh: number,
  scale: number,
  bias: (h: number, i: number, j: number) => number,
): Mat {
  const out = new Float64Array(L * heads * dh);
  const inner = heads * dh;
  const s = new Float64Array(L);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < L; i++) {
      let max = -Infinity;
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let e = 0; e < dh; e++) dot += q[i * inner + h * dh + e]! * k[j * inner + h * dh + e]!;
        s[j] = dot * scale + bias(h, i, j);
        max = Math.max(max, s[j]!);
      }
      let sum = 0;
      for (let j = 0; j < L; j++) sum += s[j] = Math.exp(s[j]! - max);
      for (let e = 0; e < dh; e++) {
        let acc = 0;
        for (let j = 0; j < L; j++) acc += (s[j]! / sum) * v[j * inner + h * dh + e]!;
        out[i * inner + h * dh + e] = acc;
      }
    }
  }
  return out;
}

const addInPlace = (a: Mat, b: Mat) => {
  for (let i = 0; i < a.length; i++) a[i]! += b[i]!;
  return a;
};

export interface RefClipConfig {
  hidden: number;
  heads: number;
  layers: number;
  intermediate: number;
  eps: number;
}

/** CLIPTextModel on one row of ids: last_hidden_state [L, D] and the pooled vector at `poolAt`. */
export function referenceClipText(
  weights: RefWeights,
  c: RefClipConfig,
  ids: readonly number[],
  poolAt: number,
): { last: Mat; pooled: Mat } {
  const L = ids.length;
  const D = c.hidden;
  const p = "text_model.";
  const tok = w(weights, `${p}embeddings.token_embedding.weight`);
  const pos = w(weights, `${p}embeddings.position_embedding.weight`);
  let h = new Float64Array(L * D);
  for (let t = 0; t < L; t++)
    for (let i = 0; i < D; i++) h[t * D + i] = tok[ids[t]! * D + i]! + pos[t * D + i]!;
  const dh = D / c.heads;
  for (let l = 0; l < c.layers; l++) {
    const n = `${p}encoder.layers.${l}.`;
    const x = layerNorm(
      h,
      L,
      D,
      w(weights, `${n}layer_norm1.weight`),
      w(weights, `${n}layer_norm1.bias`),
      c.eps,
    );
    const proj = (m: string) =>
      dense(x, L, D, w(weights, `${n}self_attn.${m}.weight`), D, w(weights, `${n}self_attn.${m}.bias`));
    // Causal: key j is visible to query i only when j ≤ i.
    const a = attention(
      proj("q_proj"),
      proj("k_proj"),
      proj("v_proj"),
      L,
      c.heads,
      dh,
      1 / Math.sqrt(dh),
      (_h, i, j) => (j > i ? -Infinity : 0),
    );
    h = addInPlace(
      h,
      dense(
        a,
        L,
        D,
        w(weights, `${n}self_attn.out_proj.weight`),
        D,
        w(weights, `${n}self_attn.out_proj.bias`),
      ),
    );
    const y = layerNorm(
      h,
      L,
      D,
      w(weights, `${n}layer_norm2.weight`),
      w(weights, `${n}layer_norm2.bias`),
      c.eps,
    );
    const f = dense(
      y,
      L,
      D,
      w(weights, `${n}mlp.fc1.weight`),
      c.intermediate,
      w(weights, `${n}mlp.fc1.bias`),
    );
    for (let i = 0; i < f.length; i++) {
      const z = f[i]!;
      f[i] = z / (1 + Math.exp(-1.702 * z)); // quick_gelu
    }
    h = addInPlace(
      h,
      dense(f, L, c.intermediate, w(weights, `${n}mlp.fc2.weight`), D, w(weights, `${n}mlp.fc2.bias`)),
    );
  }
  const last = layerNorm(
    h,
    L,
    D,
    w(weights, `${p}final_layer_norm.weight`),
    w(weights, `${p}final_layer_norm.bias`),
    c.eps,
  );
  return { last, pooled: last.slice(poolAt * D, (poolAt + 1) * D) };
}

export interface RefT5Config {
  dModel: number;
  dKv: number;
  heads: number;
  dFf: number;
  layers: number;
  buckets: number;
  maxDistance: number;
  eps: number;
}

/** transformers' `_relative_position_bucket` (bidirectional) in float64. */
function bucketOf(rel: number, numBuckets: number, maxDistance: number): number {
  const nb = numBuckets / 2;
  let bucket = rel > 0 ? nb : 0;
  const n = Math.abs(rel);
  const maxExact = nb / 2;
  if (n < maxExact) return bucket + n;
  const large =
    maxExact + Math.floor((Math.log(n / maxExact) / Math.log(maxDistance / maxExact)) * (nb - maxExact));
  bucket += Math.min(large, nb - 1);
  return bucket;
}

/** T5EncoderModel (gated-gelu FFN) on one row of ids: last_hidden_state [L, d_model]. */
export function referenceT5Encoder(weights: RefWeights, c: RefT5Config, ids: readonly number[]): Mat {
  const L = ids.length;
  const D = c.dModel;
  const inner = c.heads * c.dKv;
  const emb = w(weights, "shared.weight");
  let h = new Float64Array(L * D);
  for (let t = 0; t < L; t++) for (let i = 0; i < D; i++) h[t * D + i] = emb[ids[t]! * D + i]!;
  const table = w(weights, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  const bias = (hd: number, i: number, j: number) =>
    table[bucketOf(j - i, c.buckets, c.maxDistance) * c.heads + hd]!;
  for (let l = 0; l < c.layers; l++) {
    const n = `encoder.block.${l}.layer.`;
    const x = rmsNorm(h, L, D, w(weights, `${n}0.layer_norm.weight`), c.eps);
    const proj = (m: string) => dense(x, L, D, w(weights, `${n}0.SelfAttention.${m}.weight`), inner);
    const a = attention(proj("q"), proj("k"), proj("v"), L, c.heads, c.dKv, 1, bias);
    h = addInPlace(h, dense(a, L, inner, w(weights, `${n}0.SelfAttention.o.weight`), D));
    const y = rmsNorm(h, L, D, w(weights, `${n}1.layer_norm.weight`), c.eps);
    const g0 = dense(y, L, D, w(weights, `${n}1.DenseReluDense.wi_0.weight`), c.dFf);
    const g1 = dense(y, L, D, w(weights, `${n}1.DenseReluDense.wi_1.weight`), c.dFf);
    for (let i = 0; i < g0.length; i++) {
      const z = g0[i]!;
      const gelu = 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3)));
      g0[i] = gelu * g1[i]!;
    }
    h = addInPlace(h, dense(g0, L, c.dFf, w(weights, `${n}1.DenseReluDense.wo.weight`), D));
  }
  return rmsNorm(h, L, D, w(weights, "encoder.final_layer_norm.weight"), c.eps);
}
