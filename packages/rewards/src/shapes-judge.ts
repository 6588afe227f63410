import type { Reward, RewardInput, RewardOutput } from "@edit-r1/core";
import { judgeFromRequirement, ShapesError } from "@edit-r1/shapes";
import { checkRewardOutputs } from "./compose-rewards.js";
import { JudgeConfigError, JudgeInputError } from "./errors.js";
import { type JudgeModel, parseJudgePrompt } from "./judge-model.js";

/**
 * The embedded default's judge: like an MLLM it answers with a distribution over the score tokens 0–5, but
 * its distribution is centred on the shapes world's exact verifier score. The target is recovered from the
 * requirement's `[shapes:v1:…]` tag, so it works over HTTP with nothing but the judge prompt and images.
 */
export function createShapesJudgeModel(id = "shapes"): JudgeModel {
  return {
    id,
    judge({ images, text }) {
      const { requirement } = parseJudgePrompt(text);
      // Everything wrong here is in the request, so the server answers 400 and the client does not retry.
      if (!requirement) {
        throw new JudgeInputError(
          "shapes judge: the prompt has no 'Requirement for this edit:' line with a [shapes:v1:…] tag; " +
            "score shapes-world data with the default score-logit template.",
        );
      }
      const edited = images[images.length - 1];
      if (!edited) throw new JudgeInputError("shapes judge: the request carries no edited image.");
      try {
        return { distribution: judgeFromRequirement(edited, requirement).probs };
      } catch (err) {
        if (err instanceof ShapesError)
          throw new JudgeInputError(`shapes judge: ${err.message}`, { cause: err });
        throw err;
      }
    },
  };
}

/** The same judge in-process, as a Reward: score = Σ k·p_k / 5, exactly what the HTTP route yields. */
export function createShapesJudgeReward(name = "shapes"): Reward {
  return {
    name,
    async score(batch: readonly RewardInput[], options) {
      const out: RewardOutput[] = batch.map((item) => {
        options?.signal?.throwIfAborted();
        if (!item.requirement) {
          throw new JudgeConfigError(
            `shapes judge: item "${item.key}" has no requirement; shapes-world data carries a [shapes:v1:…] tag there.`,
          );
        }
        const d = judgeFromRequirement(item.edited, item.requirement);
        return {
          score: d.expected,
          components: { [name]: d.expected, [`${name}.verifier`]: d.verifier.score },
          raw: { probs: d.probs },
        };
      });
      checkRewardOutputs(name, out, batch.length);
      return out;
    },
  };
}
