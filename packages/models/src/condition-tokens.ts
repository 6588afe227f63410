import { ops, type Tensor } from "@edit-r1/engine";

/**
 * In-context conditioning as FLUX-Kontext and Qwen-Image-Edit do it: the condition-image tokens are appended
 * after the noisy target tokens on the sequence axis, the transformer runs over both, and only the target
 * tokens' output is kept (the condition tokens' outputs are discarded). `run` maps the joint [B, N + M, C]
 * sequence to the transformer's output [B, N + M, C'].
 */
export function withConditionTokens(
  noisy: Tensor,
  conditions: readonly Tensor[],
  run: (joint: Tensor) => Tensor,
): Tensor {
  const targetTokens = noisy.shape[1]!;
  const joint = conditions.length ? ops.concat([noisy, ...conditions], 1) : noisy;
  const out = run(joint);
  return conditions.length ? ops.slice(out, [0], [targetTokens], [1]) : out;
}
