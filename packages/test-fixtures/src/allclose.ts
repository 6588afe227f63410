import { FixtureError } from "./fixture-error.js";

const checkLengths = (what: string, a: ArrayLike<number>, b: ArrayLike<number>): void => {
  if (a.length !== b.length) {
    throw new FixtureError(`${what}: the arrays differ in length (${a.length} vs ${b.length})`);
  }
};

/**
 * ‖a − b‖ / ‖b‖, accumulated in float64: the error of `a` relative to the reference `b` as a whole, which
 * stays meaningful where single elements of `b` are near zero. 0 when both are zero, Infinity when only
 * `b` is.
 */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  checkLengths("relativeL2", a, b);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  if (den === 0) return num === 0 ? 0 : Number.POSITIVE_INFINITY;
  return Math.sqrt(num / den);
}

/** Largest |a − b| (NaN anywhere gives NaN). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  checkLengths("maxAbsDiff", a, b);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Number.NaN;
    if (d > m) m = d;
  }
  return m;
}

/** Tolerances of `allclose`: element i passes when |a[i] − b[i]| ≤ atol + rtol·|b[i]|, as in numpy. */
export interface AllcloseTolerance {
  atol: number;
  rtol: number;
  /** The arrays' shape, to report the worst element by its multi-index (e.g. [batch, token, channel]). */
  shape?: readonly number[];
}

/** The worst element found by `allclose`. */
export interface AllcloseWorst {
  index: number;
  /** `index` as a multi-index of `shape`, when given. */
  at: number[] | undefined;
  actual: number;
  expected: number;
  diff: number;
  allowed: number;
}

export interface AllcloseResult {
  ok: boolean;
  /** Elements outside the tolerance (NaN counts as outside). */
  failures: number;
  count: number;
  /** Largest |a − b| / (atol + rtol·|b|) over all elements: below 1 when `ok`, how far over when not. */
  ratio: number;
  worst: AllcloseWorst | undefined;
  /** One line saying how many elements failed and which is worst, for `expect(r.ok, r.message)`. */
  message: string;
}

const fmt = (v: number): string =>
  !Number.isFinite(v) || v === 0
    ? String(v)
    : Math.abs(v) < 1e-2 || Math.abs(v) >= 1e4
      ? v.toExponential(3)
      : v.toPrecision(4);

/**
 * Compares `a` with the reference `b` element by element, numpy's way (|a − b| ≤ atol + rtol·|b|), and
 * reports the element closest to (or furthest past) its allowance. Use it as
 * `expect(r.ok, r.message).toBe(true)`.
 */
export function allclose(a: ArrayLike<number>, b: ArrayLike<number>, tol: AllcloseTolerance): AllcloseResult {
  checkLengths("allclose", a, b);
  const { atol, rtol, shape } = tol;
  if (!(atol >= 0 && rtol >= 0))
    throw new FixtureError(`allclose: atol and rtol must be ≥ 0 (got ${atol}, ${rtol})`);
  if (shape && shape.reduce((p, s) => p * s, 1) !== a.length) {
    throw new FixtureError(`allclose: shape [${shape.join(", ")}] does not hold ${a.length} elements`);
  }
  let failures = 0;
  let ratio = 0;
  let worstIndex = -1;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i]! - b[i]!);
    const allowed = atol + rtol * Math.abs(b[i]!);
    const r = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff === 0 ? 0 : diff / allowed;
    if (r > 1) failures++;
    if (worstIndex < 0 || r > ratio) {
      ratio = r;
      worstIndex = i;
    }
  }
  let worst: AllcloseWorst | undefined;
  if (worstIndex >= 0) {
    const at = shape ? multiIndex(worstIndex, shape) : undefined;
    worst = {
      index: worstIndex,
      at,
      actual: a[worstIndex]!,
      expected: b[worstIndex]!,
      diff: Math.abs(a[worstIndex]! - b[worstIndex]!),
      allowed: atol + rtol * Math.abs(b[worstIndex]!),
    };
  }
  const where = worst ? `[${(worst.at ?? [worst.index]).join(", ")}]` : "";
  const tolText = `atol ${fmt(atol)}, rtol ${fmt(rtol)}`;
  const message = !worst
    ? `allclose: no elements to compare (${tolText})`
    : failures > 0
      ? `${failures} of ${a.length} elements differ by more than atol + rtol·|expected| (${tolText}); worst at ` +
        `${where}: got ${fmt(worst.actual)}, expected ${fmt(worst.expected)}, |diff| ${fmt(worst.diff)} > ` +
        `allowed ${fmt(worst.allowed)} (${fmt(ratio)}× the allowance)`
      : `all ${a.length} elements within ${tolText}; worst at ${where} uses ${fmt(ratio)} of its allowance ` +
        `(|diff| ${fmt(worst.diff)}, expected ${fmt(worst.expected)})`;
  return { ok: failures === 0, failures, count: a.length, ratio, worst, message };
}

function multiIndex(flat: number, shape: readonly number[]): number[] {
  const at = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    at[d] = flat % shape[d]!;
    flat = Math.floor(flat / shape[d]!);
  }
  return at;
}
