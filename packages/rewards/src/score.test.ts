import { describe, expect, it } from "vitest";
import { expectedScore, parseScoreText, scoreDistribution, yesProbability } from "./score.js";

describe("expectedScore", () => {
  it("renormalises among the score tokens and takes the expectation", () => {
    const s = expectedScore([
      { token: "4", logprob: Math.log(0.3) },
      { token: "5", logprob: Math.log(0.1) },
      { token: "The", logprob: Math.log(0.6) },
    ]);
    expect(s).toBeCloseTo((4 * 0.75 + 5 * 0.25) / 5, 12);
  });
  it("returns undefined when no digit is present", () => {
    expect(expectedScore([{ token: "Yes", logprob: -0.1 }])).toBeUndefined();
  });
  it("ignores digits above the maximum and multi-digit tokens", () => {
    const s = expectedScore([
      { token: "9", logprob: -0.01 },
      { token: "10", logprob: -0.02 },
      { token: "2", logprob: -3 },
    ]);
    expect(s).toBeCloseTo(2 / 5, 12);
  });
  it("reads byte-level BPE and SentencePiece markers and spaces", () => {
    const p = scoreDistribution([
      { token: "Ġ1", logprob: Math.log(0.5) },
      { token: "▁3", logprob: Math.log(0.25) },
      { token: " 5 ", logprob: Math.log(0.25) },
    ]);
    expect(p).toEqual([0, 0.5, 0, 0.25, 0, 0.25].map((v) => expect.closeTo(v, 12)));
  });
  it("keeps the likelier of duplicate digit tokens", () => {
    const p = scoreDistribution([
      { token: "4", logprob: Math.log(0.4) },
      { token: " 4", logprob: Math.log(0.1) },
      { token: "0", logprob: Math.log(0.4) },
    ]);
    expect(p?.[4]).toBeCloseTo(0.5, 12);
    expect(p?.[0]).toBeCloseTo(0.5, 12);
  });
  it("treats vLLM's -9999 stand-in for -inf as zero probability", () => {
    const p = scoreDistribution([
      { token: "5", logprob: -9999 },
      { token: "2", logprob: -0.7 },
    ]);
    expect(p?.[5]).toBe(0);
    expect(p?.[2]).toBe(1);
  });
  it("is undefined when every digit has -inf logprob", () => {
    expect(scoreDistribution([{ token: "3", logprob: Number.NEGATIVE_INFINITY }])).toBeUndefined();
  });
  it("is stable for very negative logprobs", () => {
    const s = expectedScore([
      { token: "1", logprob: -1000 },
      { token: "3", logprob: -1000 },
    ]);
    expect(s).toBeCloseTo(2 / 5, 12);
  });
});

describe("yesProbability", () => {
  it("normalises Yes against No, case-insensitive", () => {
    const p = yesProbability([
      { token: "Yes", logprob: Math.log(0.6) },
      { token: " no", logprob: Math.log(0.2) },
      { token: "Maybe", logprob: Math.log(0.2) },
    ]);
    expect(p).toBeCloseTo(0.75, 12);
  });
  it("is 1 when only Yes is present and undefined when neither is", () => {
    expect(yesProbability([{ token: "YES", logprob: -2 }])).toBe(1);
    expect(yesProbability([{ token: "4", logprob: -0.1 }])).toBeUndefined();
  });
});

describe("parseScoreText", () => {
  it("accepts a lone integer with light decoration", () => {
    expect(parseScoreText("4")).toBe(4);
    expect(parseScoreText(" [[3]] ")).toBe(3);
    expect(parseScoreText("5.")).toBe(5);
  });
  it("rejects text that is not just a score, and scores above the maximum", () => {
    expect(parseScoreText("I think 4")).toBeUndefined();
    expect(parseScoreText("6")).toBeUndefined();
    expect(parseScoreText("")).toBeUndefined();
  });
  it("with a marker, takes the last marked score and ignores digits in the reasoning", () => {
    expect(parseScoreText("There are 2 cats. Score: 1\nOn reflection, Score: 3", 5, "Score")).toBe(3);
    expect(parseScoreText("**Score**: [[4]]", 5, "Score")).toBe(4);
    expect(parseScoreText("2 cats, looks fine", 5, "Score")).toBeUndefined();
  });
});
