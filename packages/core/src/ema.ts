import { emaDecay } from "./decay.js";
import { assertSameLayout, cloneParams, type ParamSet } from "./params.js";

/**
 * The evaluation/checkpoint EMA of the trained parameters (not the old policy): after optimizer step k,
 * ema ← d·ema + (1 − d)·θ with d = min((1 + k)/(10 + k), maxDecay).
 */
export class Ema {
  readonly params: ParamSet;
  constructor(
    initial: ParamSet,
    readonly maxDecay = 0.9,
  ) {
    this.params = cloneParams(initial);
  }

  /** Folds in θ after optimizer step k (0-based); returns the decay used. */
  update(params: ParamSet, k: number): number {
    assertSameLayout(this.params, params, "Ema.update");
    const d = emaDecay(k, this.maxDecay);
    for (const [name, e] of Object.entries(this.params)) {
      const p = params[name]!;
      for (let i = 0; i < e.length; i++) e[i] = d * e[i]! + (1 - d) * p[i]!;
    }
    return d;
  }

  load(params: ParamSet): void {
    assertSameLayout(this.params, params, "Ema.load");
    for (const [name, e] of Object.entries(this.params)) e.set(params[name]!);
  }
}
