import { ConfigError } from "./errors.js";
import { assertSameLayout, type ParamSet, zerosLike } from "./params.js";

export interface AdamWSettings {
  lr: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  eps: number;
}

/** Edit-R1's optimizer settings (constant learning rate, no scheduler). */
export const DEFAULT_ADAMW: AdamWSettings = {
  lr: 3e-4,
  beta1: 0.9,
  beta2: 0.999,
  weightDecay: 1e-4,
  eps: 1e-8,
};

/** Everything a resumed run needs to continue bit-for-bit. */
export interface AdamWState {
  step: number;
  settings: AdamWSettings;
  m: ParamSet;
  v: ParamSet;
}

/** The scalars of AdamW's update at step `step` (1-based): the bias-corrected step size and √(1 − β₂^step). */
export function adamwStepScalars(
  settings: AdamWSettings,
  step: number,
): { stepSize: number; bc2Sqrt: number } {
  return {
    stepSize: settings.lr / (1 - settings.beta1 ** step),
    bc2Sqrt: Math.sqrt(1 - settings.beta2 ** step),
  };
}

/** AdamW with decoupled weight decay, as torch.optim.AdamW; moments are float32 like torch's. */
export class AdamW {
  readonly settings: AdamWSettings;
  private stepCount = 0;
  private m: ParamSet;
  private v: ParamSet;

  constructor(params: ParamSet, settings: Partial<AdamWSettings> = {}) {
    this.settings = { ...DEFAULT_ADAMW, ...settings };
    const { lr, beta1, beta2, eps, weightDecay } = this.settings;
    if (!(lr > 0)) throw new ConfigError(`AdamW: lr must be positive, got ${lr}`);
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1))
      throw new ConfigError(`AdamW: betas must lie in [0, 1), got ${beta1}, ${beta2}`);
    if (!(eps > 0) || !(weightDecay >= 0))
      throw new ConfigError(
        `AdamW: eps must be positive and weightDecay non-negative, got ${eps}, ${weightDecay}`,
      );
    this.m = zerosLike(params);
    this.v = zerosLike(params);
  }

  get step(): number {
    return this.stepCount;
  }

  /** One update of params (in place) from grads. */
  update(params: ParamSet, grads: ParamSet): void {
    assertSameLayout(this.m, params, "AdamW parameters");
    assertSameLayout(this.m, grads, "AdamW gradients");
    const { lr, beta1, beta2, weightDecay, eps } = this.settings;
    this.stepCount++;
    const { stepSize, bc2Sqrt } = adamwStepScalars(this.settings, this.stepCount);
    const decay = 1 - lr * weightDecay;
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name]!;
      const m = this.m[name]!;
      const v = this.v[name]!;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        m[i] = beta1 * m[i]! + (1 - beta1) * gi;
        v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
        p[i] = p[i]! * decay - (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bc2Sqrt + eps);
      }
    }
  }

  getState(): AdamWState {
    const copy = (s: ParamSet): ParamSet =>
      Object.fromEntries(Object.entries(s).map(([k, a]) => [k, Float32Array.from(a)]));
    return { step: this.stepCount, settings: { ...this.settings }, m: copy(this.m), v: copy(this.v) };
  }

  loadState(state: AdamWState): void {
    assertSameLayout(this.m, state.m, "AdamW state (first moments)");
    assertSameLayout(this.v, state.v, "AdamW state (second moments)");
    if (!Number.isInteger(state.step) || state.step < 0)
      throw new ConfigError(`AdamW state: step must be a non-negative integer, got ${state.step}`);
    this.stepCount = state.step;
    for (const k of Object.keys(this.m)) {
      this.m[k]!.set(state.m[k]!);
      this.v[k]!.set(state.v[k]!);
    }
  }
}
