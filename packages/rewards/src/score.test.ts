import { describe, expect, it } from "vitest";
import { expectedScore } from "./score.js";

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
});
