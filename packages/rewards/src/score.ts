/** One candidate token and its log-probability, as OpenAI-compatible servers return in `top_logprobs`. */
export interface TokenLogprob {
  token: string;
  logprob: number;
}

/**
 * Byte-level BPE ("Ġ4") and SentencePiece ("▁4") markers and surrounding spaces are stripped, so that a
 * server returning raw vocabulary pieces is read the same as one returning decoded text.
 */
function normaliseToken(token: string): string {
  return token.replace(/^[\u0120\u2581]+/, "").trim();
}

/**
 * Probabilities of the score tokens "0".."max", renormalised among themselves (softmax over their
 * logprobs only, as Edit-R1 does over the logits of token ids 15–20). When the same digit appears as
 * several tokens (e.g. "4" and " 4") the likelier one counts. Returns undefined when none of the score
 * tokens is among the candidates, so the caller can fail loudly instead of inventing a score.
 */
export function scoreDistribution(candidates: readonly TokenLogprob[], max = 5): number[] | undefined {
  const best = new Map<number, number>();
  for (const { token, logprob } of candidates) {
    const t = normaliseToken(token);
    if (!/^\d$/.test(t)) continue;
    const k = Number(t);
    if (k > max || Number.isNaN(logprob)) continue;
    best.set(k, Math.max(best.get(k) ?? Number.NEGATIVE_INFINITY, logprob));
  }
  const top = Math.max(...best.values());
  if (best.size === 0 || !Number.isFinite(top)) return undefined;
  const p = new Array<number>(max + 1).fill(0);
  let z = 0;
  // Digit order, whatever order the candidates came in: the same logprobs always give the same bits.
  for (let k = 0; k <= max; k++) {
    const lp = best.get(k);
    if (lp === undefined) continue;
    p[k] = Math.exp(lp - top);
    z += p[k];
  }
  return p.map((v) => v / z);
}

/**
 * Expected score over the score tokens "0".."max", renormalised among themselves, divided by max:
 * Σ k·p_k / max ∈ [0, 1]. Returns undefined when none of the score tokens is among the candidates.
 */
export function expectedScore(candidates: readonly TokenLogprob[], max = 5): number | undefined {
  const p = scoreDistribution(candidates, max);
  if (p === undefined) return undefined;
  let s = 0;
  for (let k = 0; k <= max; k++) s += k * p[k];
  return s / max;
}

/**
 * P("yes") / (P("yes") + P("no")) over the candidates, case-insensitive ("Yes", " yes", "YES" all count;
 * the likelier variant of each answer counts). Undefined when neither answer is among the candidates.
 */
export function yesProbability(candidates: readonly TokenLogprob[]): number | undefined {
  let yes = Number.NEGATIVE_INFINITY;
  let no = Number.NEGATIVE_INFINITY;
  for (const { token, logprob } of candidates) {
    if (Number.isNaN(logprob)) continue;
    const t = normaliseToken(token).toLowerCase();
    if (t === "yes") yes = Math.max(yes, logprob);
    else if (t === "no") no = Math.max(no, logprob);
  }
  const top = Math.max(yes, no);
  if (!Number.isFinite(top)) return undefined;
  const py = Math.exp(yes - top);
  const pn = Math.exp(no - top);
  return py / (py + pn);
}

/**
 * The integer score a judge wrote, for the sampled-score ablations. With `marker` (e.g. "Score"), the
 * last "<marker>: N" in the text counts, so digits inside a chain of thought are ignored; without it the
 * text must be a lone integer, optionally wrapped in punctuation or brackets ("4", "[[4]]", "4.").
 * Undefined when no integer in [0, max] is found.
 */
export function parseScoreText(text: string, max = 5, marker?: string): number | undefined {
  let found: string | undefined;
  if (marker !== undefined) {
    const escaped = marker.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const re = new RegExp(`${escaped}\\W{0,6}?(\\d+)`, "gi");
    for (const m of text.matchAll(re)) found = m[1];
  } else {
    const m = /^[\s"'[(*:]*(\d+)[\s"'\])*.!]*$/.exec(text);
    found = m?.[1];
  }
  if (found === undefined) return undefined;
  const k = Number(found);
  return k <= max ? k : undefined;
}
