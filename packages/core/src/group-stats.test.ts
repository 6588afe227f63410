import { describe, expect, it } from "vitest";
import { groupKeyOf, groupStatistics } from "./group-stats.js";

describe("groupStatistics", () => {
  it("normalises by the global std over all samples, filtered ones included", () => {
    const keys = ["a", "a", "b", "b"];
    const rewards = [0.2, 0.6, 0.95, 0.95];
    const s = groupStatistics(keys, rewards);
    const mean = 0.675;
    const std = Math.sqrt(rewards.reduce((acc, r) => acc + (r - mean) ** 2, 0) / 4);
    expect(s.globalStd).toBeCloseTo(std, 14);
    expect(s.advantages[0]).toBeCloseTo((0.2 - 0.4) / (std + 1e-4), 14);
    expect(Array.from(s.validMask)).toEqual([1, 1, 0, 0]);
    expect(s.banned).toEqual(["b"]);
    expect(s.filteredFraction).toBe(0.5);
  });

  it("masks low-spread failing groups too, but bans only solved ones", () => {
    const s = groupStatistics(["lo", "lo", "hi", "hi"], [0.1, 0.1, 0.5, 0.9]);
    expect(Array.from(s.validMask)).toEqual([0, 0, 1, 1]);
    expect(s.banned).toEqual([]);
  });

  it("takes configurable thresholds", () => {
    const s = groupStatistics(["a", "a"], [0.8, 0.9], { stdThreshold: 0.01, meanThreshold: 0.8 });
    expect(Array.from(s.validMask)).toEqual([0, 0]);
  });

  it("groups by instruction and source image, not instruction alone", () => {
    const a = groupKeyOf({ key: "row1", instruction: "make it red", sourceKey: "img/1.png" });
    const b = groupKeyOf({ key: "row2", instruction: "make it red", sourceKey: "img/2.png" });
    const c = groupKeyOf({ key: "row3", instruction: "make it red", sourceKey: "img/1.png" });
    expect(a).not.toBe(b);
    expect(a).toBe(c);
    const s = groupStatistics([a, a, b, b], [0.1, 0.3, 0.7, 0.9]);
    expect(s.groupCount).toBe(2);
    expect(s.groupMean[0]).toBeCloseTo(0.2, 14);
    expect(s.groupMean[2]).toBeCloseTo(0.8, 14);
  });

  it("rejects mismatched lengths", () => {
    expect(() => groupStatistics(["a"], [0.1, 0.2])).toThrow(/2 rewards for 1 group keys/);
  });
});
