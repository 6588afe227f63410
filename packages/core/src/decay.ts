/**
 * Decay of the old (rollout) policy's soft update θ_old ← η·θ_old + (1 − η)·θ.
 * Type 1 (Edit-R1 default): η = min(0.001·step, 0.5). Type 2 (DiffusionNFT OCR): 0 before step 75,
 * then min((step − 75)·0.0075, 0.999). Type 0: always on-policy.
 */
export function oldPolicyDecay(step: number, decayType: 0 | 1 | 2 = 1): number {
  if (!Number.isInteger(step) || step < 0)
    throw new RangeError(`oldPolicyDecay: step must be a non-negative integer, got ${step}`);
  switch (decayType) {
    case 0:
      return 0;
    case 1:
      return Math.min(0.001 * step, 0.5);
    case 2:
      return step < 75 ? 0 : Math.min((step - 75) * 0.0075, 0.999);
  }
}

/** Warm-up of the evaluation/checkpoint EMA: decay_k = min((1 + k)/(10 + k), maxDecay). */
export function emaDecay(k: number, maxDecay = 0.9): number {
  return Math.min((1 + k) / (10 + k), maxDecay);
}
