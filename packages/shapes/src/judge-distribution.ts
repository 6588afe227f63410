import { InvalidOptionsError } from "./errors.js";
import { renderScene } from "./render-scene.js";
import { parseRequirement } from "./requirement-tag.js";
import type { RgbImage } from "./rgb-image.js";
import { type VerifyOptions, type VerifyResult, verifyDetails } from "./verify.js";

/** The judge's score tokens, as an MLLM judge would emit them (first generated token). */
export const SCORE_TOKENS = ["0", "1", "2", "3", "4", "5"] as const;
export const MAX_JUDGE_SCORE = 5;
export const DEFAULT_JUDGE_SPREAD = 0.7;

export interface JudgeDistributionOptions extends VerifyOptions {
  /**
   * Standard deviation, in score points, of the bell the probabilities follow around 5 × verifier
   * score (default 0.7: most mass on the nearest one or two scores, like a confident MLLM).
   */
  spread?: number;
}

export interface JudgeDistribution {
  /** p_0 … p_5, summing to 1. */
  probs: number[];
  /** log p_k: what the judge's score tokens' logprobs would be (finite, renormalised over 0–5). */
  logprobs: number[];
  /** Σ k p_k / 5, in [0, 1]: Edit-R1's reward from score-token probabilities. */
  expected: number;
  /** The most probable score: the text a greedy judge would answer. */
  mostLikely: number;
  /** The OpenAI-style top logprobs of the score token, most likely first. */
  topLogprobs: { token: string; logprob: number }[];
}

/**
 * The score distribution of a judge that knows the verifier score `score` ∈ [0, 1]: a discretised
 * bell centred on 5 × score. It is deterministic and its expectation rises strictly with `score`,
 * but like a real MLLM's it never puts all mass on one token, so even a perfect edit's expected
 * value is a little below 1 and a failed one's a little above 0.
 */
export function judgeDistributionFromScore(
  score: number,
  options: JudgeDistributionOptions = {},
): JudgeDistribution {
  if (!(Number.isFinite(score) && score >= 0 && score <= 1)) {
    throw new InvalidOptionsError(`judge: score must be in [0, 1], got ${score}.`);
  }
  const spread = options.spread ?? DEFAULT_JUDGE_SPREAD;
  if (!(Number.isFinite(spread) && spread > 0)) {
    throw new InvalidOptionsError(`judge: spread must be a positive number of score points, got ${spread}.`);
  }
  const centre = MAX_JUDGE_SCORE * score;
  const logits = SCORE_TOKENS.map((_, k) => -((k - centre) ** 2) / (2 * spread * spread));
  const top = Math.max(...logits);
  const logZ = top + Math.log(logits.reduce((acc, l) => acc + Math.exp(l - top), 0));
  const logprobs = logits.map((l) => l - logZ);
  const probs = logprobs.map((l) => Math.exp(l));
  const expected = probs.reduce((acc, p, k) => acc + k * p, 0) / MAX_JUDGE_SCORE;
  const order = SCORE_TOKENS.map((_, k) => k).sort((a, b) => logprobs[b]! - logprobs[a]!);
  return {
    probs,
    logprobs,
    expected,
    mostLikely: order[0]!,
    topLogprobs: order.map((k) => ({ token: SCORE_TOKENS[k]!, logprob: logprobs[k]! })),
  };
}

/** The shapes judge: verify the edit exactly, then answer like an MLLM would (see judgeDistributionFromScore). */
export function judgeDistribution(
  edited: RgbImage,
  target: RgbImage,
  source: RgbImage,
  options: JudgeDistributionOptions = {},
): JudgeDistribution & { verifier: VerifyResult } {
  const verifier = verifyDetails(edited, target, source, options);
  return { ...judgeDistributionFromScore(verifier.score, options), verifier };
}

/**
 * Judges an edited image from the requirement string alone (what an HTTP judge receives): the
 * `[shapes:v1:…]` tag gives the exact source and target scenes, rendered here. Throws
 * RequirementParseError for requirements without a tag.
 */
export function judgeFromRequirement(
  edited: RgbImage,
  requirement: string,
  options: JudgeDistributionOptions = {},
): JudgeDistribution & { verifier: VerifyResult } {
  const { scene, target } = parseRequirement(requirement);
  return judgeDistribution(edited, renderScene(target), renderScene(scene), options);
}
