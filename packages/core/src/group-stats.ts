import { ShapeError } from "./errors.js";
import type { EditRequest } from "./types.js";

export interface GroupFilterSettings {
  /** A group trains only when its reward std exceeds this (τ_σ). */
  stdThreshold: number;
  /** … and its reward mean is below this (τ_μ). */
  meanThreshold: number;
  /** Added to the global std before dividing. */
  eps: number;
}

export const DEFAULT_GROUP_FILTER: GroupFilterSettings = {
  stdThreshold: 0.05,
  meanThreshold: 0.9,
  eps: 1e-4,
};

export interface GroupStatistics {
  /** (R − group mean)/(global std + eps), per sample; uses every sample, filtered or not. */
  advantages: Float64Array;
  groupMean: Float64Array;
  groupStd: Float64Array;
  /** 1 where the sample's group has std > stdThreshold and mean < meanThreshold. */
  validMask: Uint8Array;
  /** Groups with std < stdThreshold and mean > meanThreshold: solved prompts to stop drawing (first-seen order). */
  banned: string[];
  globalMean: number;
  globalStd: number;
  groupCount: number;
  /** Fraction of samples masked out. */
  filteredFraction: number;
}

/**
 * The group key of a request: instruction and source image together. Edit-R1's tracker keys on the
 * instruction text alone, which merges different images that share an instruction; we do not.
 */
export function groupKeyOf(request: Pick<EditRequest, "instruction" | "key" | "sourceKey">): string {
  return JSON.stringify([request.instruction, request.sourceKey ?? request.key]);
}

/** Population std (numpy's default ddof = 0). */
function meanStd(values: readonly number[]): [number, number] {
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  let sq = 0;
  for (const v of values) sq += (v - mean) * (v - mean);
  return [mean, Math.sqrt(sq / values.length)];
}

/** Per-group statistics with a global std, the low-variance filter and the ban list (Edit-R1's stat tracker). */
export function groupStatistics(
  keys: readonly string[],
  rewards: ArrayLike<number>,
  settings: Partial<GroupFilterSettings> = {},
): GroupStatistics {
  const { stdThreshold, meanThreshold, eps } = { ...DEFAULT_GROUP_FILTER, ...settings };
  const n = keys.length;
  if (rewards.length !== n)
    throw new ShapeError(
      `groupStatistics: ${rewards.length} rewards for ${n} group keys; pass one key per reward`,
    );
  if (n === 0) throw new ShapeError("groupStatistics: no rewards");
  const all = Array.from(rewards);
  const [globalMean, globalStd] = meanStd(all);
  const members = new Map<string, number[]>();
  keys.forEach((k, i) => {
    const list = members.get(k);
    if (list) list.push(i);
    else members.set(k, [i]);
  });
  const advantages = new Float64Array(n);
  const groupMean = new Float64Array(n);
  const groupStd = new Float64Array(n);
  const validMask = new Uint8Array(n);
  const banned: string[] = [];
  let filtered = 0;
  for (const [key, idx] of members) {
    const [mean, std] = meanStd(idx.map((i) => all[i]!));
    const valid = std > stdThreshold && mean < meanThreshold;
    if (std < stdThreshold && mean > meanThreshold) banned.push(key);
    for (const i of idx) {
      advantages[i] = (all[i]! - mean) / (globalStd + eps);
      groupMean[i] = mean;
      groupStd[i] = std;
      validMask[i] = valid ? 1 : 0;
      if (!valid) filtered++;
    }
  }
  return {
    advantages,
    groupMean,
    groupStd,
    validMask,
    banned,
    globalMean,
    globalStd,
    groupCount: members.size,
    filteredFraction: filtered / n,
  };
}
