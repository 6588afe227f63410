import { ShapeError } from "./errors.js";

/** Named float32 parameter (or gradient) tensors, flattened; names are stable across a run. */
export type ParamSet = Record<string, Float32Array>;

export function cloneParams(params: ParamSet): ParamSet {
  const out: ParamSet = {};
  for (const [k, v] of Object.entries(params)) out[k] = Float32Array.from(v);
  return out;
}

export function zerosLike(params: ParamSet): ParamSet {
  const out: ParamSet = {};
  for (const [k, v] of Object.entries(params)) out[k] = new Float32Array(v.length);
  return out;
}

/** Throws unless b has exactly a's names and sizes. */
export function assertSameLayout(a: ParamSet, b: ParamSet, what: string): void {
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  const missing = ka.filter((k) => !(k in b));
  const extra = kb.filter((k) => !(k in a));
  if (missing.length || extra.length)
    throw new ShapeError(
      `${what}: parameter names differ (missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(extra)})`,
    );
  for (const k of ka) {
    if (a[k]!.length !== b[k]!.length)
      throw new ShapeError(`${what}: ${k} has ${b[k]!.length} values, expected ${a[k]!.length}`);
  }
}

/** target ← η·target + (1 − η)·source, in place: the old-policy soft update. */
export function softUpdate(target: ParamSet, source: ParamSet, eta: number): void {
  assertSameLayout(target, source, "softUpdate");
  for (const [k, t] of Object.entries(target)) {
    const s = source[k]!;
    for (let i = 0; i < t.length; i++) t[i] = eta * t[i]! + (1 - eta) * s[i]!;
  }
}

/** acc += scale · grads, in place. */
export function accumulate(acc: ParamSet, grads: ParamSet, scale: number): void {
  assertSameLayout(acc, grads, "accumulate gradients");
  for (const [k, a] of Object.entries(acc)) {
    const g = grads[k]!;
    for (let i = 0; i < a.length; i++) a[i] = a[i]! + scale * g[i]!;
  }
}

/** L2 norm over every tensor, in float64. */
export function globalNorm(params: ParamSet): number {
  let sq = 0;
  for (const v of Object.values(params)) for (let i = 0; i < v.length; i++) sq += v[i]! * v[i]!;
  return Math.sqrt(sq);
}

/**
 * Scales gradients in place so their global L2 norm is at most maxNorm (torch's clip_grad_norm_,
 * including its 1e-6 in the denominator). Returns the norm before clipping.
 */
export function clipGradNorm(grads: ParamSet, maxNorm: number): number {
  const norm = globalNorm(grads);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) g[i] = g[i]! * coef;
  }
  return norm;
}
