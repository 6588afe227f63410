/** One candidate token and its log-probability, as OpenAI-compatible servers return in `top_logprobs`. */
export interface TokenLogprob {
  token: string;
  logprob: number;
}

/**
 * Expected score over the score tokens "0".."max", renormalised among themselves, divided by max:
 * Σ k·p_k / max ∈ [0, 1]. Returns undefined when none of the score tokens is among the candidates,
 * so the caller can fail loudly instead of inventing a score.
 */
export function expectedScore(candidates: readonly TokenLogprob[], max = 5): number | undefined {
  const best = new Map<number, number>();
  for (const { token, logprob } of candidates) {
    const t = token.trim();
    if (!/^\d$/.test(t)) continue;
    const k = Number(t);
    if (k > max || !Number.isFinite(logprob)) continue;
    best.set(k, Math.max(best.get(k) ?? Number.NEGATIVE_INFINITY, logprob));
  }
  if (best.size === 0) return undefined;
  const top = Math.max(...best.values());
  let z = 0;
  let s = 0;
  for (const [k, lp] of best) {
    const p = Math.exp(lp - top);
    z += p;
    s += k * p;
  }
  return s / z / max;
}
