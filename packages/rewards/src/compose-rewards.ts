/**
 * Weighted composition of named rewards. Weights are relative (the score is Σ w·s / Σ w, so it stays in
 * [0, 1]); 0.8 and 0.2 give exactly the weighted sum. Every part's score is kept as a component, so a run
 * log shows which part moved when the total did (how reward hacking is spotted).
 */
import type { Reward, RewardOutput } from "@edit-r1/core";
import { EditR1Error } from "@edit-r1/core";
import { JudgeConfigError } from "./errors.js";

export interface WeightedReward {
  reward: Reward;
  /** Relative weight, ≥ 0. Default 1. */
  weight?: number;
  /** Component name. Default the reward's name. */
  name?: string;
}

/** Thrown when a part returns a score outside [0, 1] or the wrong number of outputs. */
export class RewardContractError extends EditR1Error {
  override readonly name = "RewardContractError";
}

export function checkRewardOutputs(reward: string, outputs: readonly RewardOutput[], expected: number): void {
  if (!Array.isArray(outputs) || outputs.length !== expected) {
    throw new RewardContractError(
      `reward "${reward}" returned ${Array.isArray(outputs) ? outputs.length : typeof outputs} outputs for a batch of ${expected}`,
    );
  }
  outputs.forEach((o, i) => {
    if (typeof o?.score !== "number" || !Number.isFinite(o.score) || o.score < 0 || o.score > 1) {
      throw new RewardContractError(
        `reward "${reward}" gave item ${i} the score ${o?.score}; scores must be finite and in [0, 1]`,
      );
    }
  });
}

/**
 * Components of the result: `<name>` for each part's score, and `<name>.<key>` for a part's own
 * sub-components other than the one named after the part itself. `raw` maps part names to their raw.
 */
export function composeRewards(parts: readonly WeightedReward[], options: { name?: string } = {}): Reward {
  if (parts.length === 0) throw new JudgeConfigError("composeRewards needs at least one reward");
  const named = parts.map((p) => ({
    reward: p.reward,
    weight: p.weight ?? 1,
    name: p.name ?? p.reward.name,
  }));
  const seen = new Set<string>();
  for (const p of named) {
    if (seen.has(p.name))
      throw new JudgeConfigError(`two rewards are named "${p.name}"; give each part a distinct name`);
    seen.add(p.name);
    if (!Number.isFinite(p.weight) || p.weight < 0) {
      throw new JudgeConfigError(`reward "${p.name}" has weight ${p.weight}; weights must be finite and ≥ 0`);
    }
  }
  const total = named.reduce((s, p) => s + p.weight, 0);
  if (!(total > 0))
    throw new JudgeConfigError("the reward weights sum to 0; give at least one part a positive weight");
  const name = options.name ?? named.map((p) => p.name).join("+");

  return {
    name,
    async score(batch, opts) {
      const stop = new AbortController();
      const signal = opts?.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
      const results = await Promise.all(
        named.map(async (p) => {
          try {
            const out = await p.reward.score(batch, { signal });
            checkRewardOutputs(p.name, out, batch.length);
            return out;
          } catch (err) {
            stop.abort(err);
            throw err;
          }
        }),
      );
      return batch.map((_, i) => {
        const components: Record<string, number> = {};
        const raw: Record<string, unknown> = {};
        let sum = 0;
        named.forEach((p, j) => {
          const out = results[j][i];
          sum += p.weight * out.score;
          components[p.name] = out.score;
          for (const [key, value] of Object.entries(out.components ?? {})) {
            if (key !== p.reward.name && key !== p.name) components[`${p.name}.${key}`] = value;
          }
          raw[p.name] = out.raw;
        });
        return { score: sum / total, components, raw };
      });
    },
    async close() {
      await Promise.all(named.map((p) => p.reward.close?.()));
    },
  };
}
