import { grad } from "./autodiff.js";
import type { DType } from "./dtype.js";
import { Graph, type Shape, type Tensor } from "./graph.js";
import { evaluate } from "./interpret.js";
import { mul, reduceSum } from "./ops.js";

/** Test helper: checks autodiff against central finite differences, both evaluated by the float64 interpreter. */

/** A small deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface InputSpec {
  shape: Shape;
  dtype?: DType;
  /** Values; random uniform in [-1, 1] scaled by `scale` when omitted. */
  values?: readonly number[];
  /** Draws one value (overrides the default uniform draw). */
  draw?: (r: () => number) => number;
  /** Whether to differentiate with respect to this input (default: floating-point inputs). */
  wrt?: boolean;
}

export interface GradCheckResult {
  /** Largest |analytic − numeric| / (|numeric| + atol/rtol) over all checked elements. */
  worst: number;
  worstAt: string;
  /** Largest |numeric| seen, so tests can tell a check of an all-zero gradient. */
  maxAbsNumeric: number;
  analytic: Float64Array[];
  numeric: Float64Array[];
  graph: Graph;
}

/**
 * Builds `build(inputs)`, projects its output on a fixed random tensor to get a scalar loss, takes `grad`, and
 * compares every gradient element with a central difference (step h). Returns the worst relative error,
 * measured as |a − n| / (rtol·|n| + atol) so that ≤ 1 means within tolerance.
 */
export function gradCheck(
  specs: Readonly<Record<string, InputSpec>>,
  build: (x: Record<string, Tensor>, g: Graph) => Tensor,
  options: { seed?: number; h?: number; rtol?: number; atol?: number } = {},
): GradCheckResult {
  const { seed = 1, h = 1e-5, rtol = 1e-6, atol = 1e-8 } = options;
  const r = rng(seed);
  const g = new Graph("gradcheck");
  const x: Record<string, Tensor> = {};
  const feeds: Record<string, number[]> = {};
  for (const [name, spec] of Object.entries(specs)) {
    x[name] = g.input(name, spec.dtype ?? "float32", spec.shape);
    const n = x[name].size;
    feeds[name] = spec.values
      ? [...spec.values]
      : Array.from({ length: n }, () => (spec.draw ? spec.draw(r) : 2 * r() - 1));
  }
  const out = build(x, g);
  const proj = g.input("__projection", out.dtype, out.shape);
  feeds.__projection = Array.from({ length: out.size }, () => 0.5 + r());
  const loss = reduceSum(mul(out, proj));
  const names = Object.keys(specs).filter((k) => specs[k]!.wrt ?? true);
  const grads = grad(
    loss,
    names.map((k) => x[k]!),
  );
  const analytic = evaluate(g, feeds, grads);
  const f = () => evaluate(g, feeds, [loss])[0]![0]!;
  let worst = 0;
  let worstAt = "";
  let maxAbsNumeric = 0;
  const numeric = names.map((name, k) => {
    const v = feeds[name]!;
    const num = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const keep = v[i]!;
      v[i] = keep + h;
      const up = f();
      v[i] = keep - h;
      const down = f();
      v[i] = keep;
      num[i] = (up - down) / (2 * h);
      const err = Math.abs(analytic[k]![i]! - num[i]!) / (rtol * Math.abs(num[i]!) + atol);
      maxAbsNumeric = Math.max(maxAbsNumeric, Math.abs(num[i]!));
      if (!(err <= worst)) {
        worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
        worstAt = `${name}[${i}]: analytic ${analytic[k]![i]} vs numeric ${num[i]}`;
      }
    }
    return num;
  });
  return { worst, worstAt, maxAbsNumeric, analytic, numeric, graph: g };
}
