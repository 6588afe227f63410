import type { Reward } from "@edit-r1/core";
import { describe, expect, it } from "vitest";
import { composeRewards, RewardContractError } from "./compose-rewards.js";
import { JudgeConfigError } from "./errors.js";
import { createFunctionReward } from "./function-reward.js";
import { rewardInput } from "./test-helpers.js";

const items = [rewardInput("a", 1), rewardInput("bb", 2), rewardInput("ccc", 3)];
const byLength = createFunctionReward("length", (i) => i.key.length / 3);
const constant = (name: string, v: number) => createFunctionReward(name, () => v);

describe("composeRewards", () => {
  it("takes the weighted sum of the parts and logs each part", async () => {
    const r = composeRewards([
      { reward: byLength, weight: 0.75 },
      { reward: constant("flat", 0.2), weight: 0.25 },
    ]);
    expect(r.name).toBe("length+flat");
    const out = await r.score(items);
    out.forEach((o, i) => {
      const len = items[i].key.length / 3;
      expect(o.score).toBeCloseTo(0.75 * len + 0.25 * 0.2, 12);
      expect(o.components).toEqual({ length: len, flat: 0.2 });
    });
  });

  it("treats weights as relative and defaults them to 1", async () => {
    const r = composeRewards([{ reward: constant("a", 1), weight: 3 }, { reward: constant("b", 0) }], {
      name: "mix",
    });
    expect(r.name).toBe("mix");
    expect((await r.score(items))[0].score).toBeCloseTo(0.75, 12);
  });

  it("keeps sub-components of composed parts under the part's name, and raw by part", async () => {
    const inner: Reward = {
      name: "judge",
      async score(batch) {
        return batch.map(() => ({
          score: 0.5,
          components: { judge: 0.5, fidelity: 0.9 },
          raw: { text: "2" },
        }));
      },
    };
    const [out] = await composeRewards([
      { reward: inner, name: "mllm" },
      { reward: constant("rule", 1) },
    ]).score(items);
    expect(out.components).toEqual({ mllm: 0.5, "mllm.fidelity": 0.9, rule: 1 });
    expect(out.raw).toEqual({ mllm: { text: "2" }, rule: undefined });
  });

  it("rejects parts that break the reward contract", async () => {
    const outOfRange = constant("big", 1.5);
    await expect(composeRewards([{ reward: outOfRange }]).score(items)).rejects.toThrow(RewardContractError);
    const short: Reward = { name: "short", score: async () => [{ score: 1, components: {} }] };
    await expect(composeRewards([{ reward: short }]).score(items)).rejects.toThrow(
      /returned 1 outputs for a batch of 3/,
    );
    const nan = createFunctionReward("nan", () => Number.NaN);
    await expect(nan.score(items)).rejects.toThrow(/finite and in \[0, 1\]/);
  });

  it("aborts the other parts when one fails", async () => {
    let aborted = false;
    const slow: Reward = {
      name: "slow",
      score: (_b, opts) =>
        new Promise((_, reject) =>
          opts?.signal?.addEventListener("abort", () => {
            aborted = true;
            reject(opts.signal?.reason);
          }),
        ),
    };
    const failing: Reward = { name: "failing", score: async () => Promise.reject(new Error("judge down")) };
    await expect(composeRewards([{ reward: slow }, { reward: failing }]).score(items)).rejects.toThrow(
      "judge down",
    );
    expect(aborted).toBe(true);
  });

  it("rejects bad configurations", () => {
    expect(() => composeRewards([])).toThrow(JudgeConfigError);
    expect(() => composeRewards([{ reward: byLength }, { reward: byLength }])).toThrow(
      /two rewards are named "length"/,
    );
    expect(() => composeRewards([{ reward: byLength, weight: -1 }])).toThrow(/weights must be finite/);
    expect(() => composeRewards([{ reward: byLength, weight: 0 }])).toThrow(/sum to 0/);
  });

  it("closes every part", async () => {
    let closed = 0;
    const closable = (name: string): Reward => ({ ...constant(name, 1), close: async () => void closed++ });
    await composeRewards([{ reward: closable("a") }, { reward: closable("b") }]).close?.();
    expect(closed).toBe(2);
  });
});
