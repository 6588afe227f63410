import type { Reward, RewardInput, RewardOutput } from "@edit-r1/core";
import { checkRewardOutputs } from "./compose-rewards.js";

/**
 * A reward from a plain scoring function (rule rewards, test doubles). The function must return a
 * number in [0, 1]; anything else fails the batch.
 */
export function createFunctionReward(
  name: string,
  fn: (item: RewardInput) => number | Promise<number>,
): Reward {
  return {
    name,
    async score(batch, opts) {
      const out: RewardOutput[] = [];
      for (const item of batch) {
        opts?.signal?.throwIfAborted();
        const score = await fn(item);
        out.push({ score, components: { [name]: score } });
      }
      checkRewardOutputs(name, out, batch.length);
      return out;
    },
  };
}
