import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { JudgeResponseError } from "./errors.js";
import { parseChatCompletion, verdictFromCompletion } from "./judge-response.js";
import { editR1Score } from "./test-helpers.js";

function testdata(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`./testdata/${name}`, import.meta.url), "utf8"));
}

/** The digit logprobs of the first token's top_logprobs, read straight from the JSON. */
function digitLogprobs(body: Record<string, unknown>): Record<string, number> {
  // biome-ignore lint/suspicious/noExplicitAny: walking a JSON fixture
  const top = (body as any).choices[0].logprobs.content[0].top_logprobs as Array<{
    token: string;
    logprob: number;
  }>;
  return Object.fromEntries(top.filter((t) => /^\d$/.test(t.token)).map((t) => [t.token, t.logprob]));
}

function completion(content: Array<{ token: string; logprob: number; top?: Array<[string, number]> }>) {
  return {
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: content.map((c) => c.token).join("") },
        logprobs: {
          content: content.map((c) => ({
            token: c.token,
            logprob: c.logprob,
            top_logprobs: (c.top ?? []).map(([token, logprob]) => ({ token, logprob })),
          })),
        },
        finish_reason: "stop",
      },
    ],
  };
}

describe("verdictFromCompletion on real server formats", () => {
  it("scores a vLLM response", () => {
    const body = testdata("vllm-chat-completion-score-logit.json");
    const v = verdictFromCompletion(body, "score-logit");
    expect(v.score).toBeCloseTo(editR1Score(digitLogprobs(body)), 12);
    expect(v.text).toBe("4");
    expect(v.distribution?.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });
  it("scores an OpenAI response with a digit missing from the top logprobs", () => {
    const body = testdata("openai-chat-completion-score-logit.json");
    const lp = digitLogprobs(body);
    expect(lp["0"]).toBeUndefined();
    const v = verdictFromCompletion(body, "score-logit");
    expect(v.score).toBeCloseTo(editR1Score(lp), 12);
    expect(v.distribution?.[0]).toBe(0);
  });
  it("refuses a vLLM response without logprobs", () => {
    const body = testdata("vllm-chat-completion-no-logprobs.json");
    expect(() => verdictFromCompletion(body, "score-logit")).toThrow(JudgeResponseError);
    expect(() => verdictFromCompletion(body, "score-logit")).toThrow(/no choices\[0\]\.logprobs/);
    // The same body is fine for a sampled score: it needs only the text.
    expect(verdictFromCompletion(body, "score-sample").score).toBeCloseTo(4 / 5, 12);
  });
});

describe("verdictFromCompletion failures", () => {
  it("refuses a body that is not a chat completion", () => {
    expect(() => verdictFromCompletion({ object: "list", data: [] }, "score-logit")).toThrow(/no choices/);
    expect(() => parseChatCompletion({ choices: [{ message: { content: 3 } }] })).toThrow(/not a string/);
    expect(() =>
      parseChatCompletion({
        choices: [{ message: { content: "4" }, logprobs: { content: [{ token: 4 }] } }],
      }),
    ).toThrow(/logprobs\.content\[0\]/);
  });
  it("refuses a first token whose candidates hold no digit, naming the likeliest tokens", () => {
    const body = completion([
      {
        token: "The",
        logprob: -0.1,
        top: [
          ["The", -0.1],
          ["Sure", -2.5],
        ],
      },
    ]);
    expect(() => verdictFromCompletion(body, "score-logit")).toThrow(/none of the score tokens 0–5.*"The"/);
  });
  it("counts the chosen token even when it is missing from top_logprobs", () => {
    const body = completion([{ token: "2", logprob: Math.log(0.5), top: [["Hmm", Math.log(0.5)]] }]);
    expect(verdictFromCompletion(body, "score-logit").score).toBeCloseTo(2 / 5, 12);
  });
});

describe("other modes", () => {
  it("yes-no reads P(Yes) among Yes and No", () => {
    const body = completion([
      {
        token: "Yes",
        logprob: Math.log(0.7),
        top: [
          ["Yes", Math.log(0.7)],
          ["No", Math.log(0.1)],
        ],
      },
    ]);
    expect(verdictFromCompletion(body, "yes-no").score).toBeCloseTo(0.875, 12);
    const neither = completion([{ token: "4", logprob: 0, top: [["4", 0]] }]);
    expect(() => verdictFromCompletion(neither, "yes-no")).toThrow(/neither "Yes" nor "No"/);
  });
  it("cot-score-logit scores the digit after the last Score marker, not digits in the reasoning", () => {
    const body = completion([
      { token: "There", logprob: 0 },
      { token: " are", logprob: 0 },
      { token: " 2", logprob: 0, top: [[" 2", 0]] },
      { token: " cats", logprob: 0 },
      { token: ".\n", logprob: 0 },
      { token: "Score", logprob: 0 },
      { token: ":", logprob: 0 },
      { token: " ", logprob: 0 },
      {
        token: "3",
        logprob: Math.log(0.6),
        top: [
          ["3", Math.log(0.6)],
          ["5", Math.log(0.2)],
          ["4", Math.log(0.2)],
        ],
      },
    ]);
    const v = verdictFromCompletion(body, "cot-score-logit");
    expect(v.score).toBeCloseTo((3 * 0.6 + 5 * 0.2 + 4 * 0.2) / 5, 12);
  });
  it("cot-score-logit refuses reasoning without the marker, or a digit merged into a token", () => {
    const noMarker = completion([{ token: "Looks good, 4", logprob: 0 }]);
    expect(() => verdictFromCompletion(noMarker, "cot-score-logit")).toThrow(/no "Score: N" line/);
    const merged = completion([{ token: "Score: 4", logprob: 0, top: [["Score: 4", 0]] }]);
    expect(() => verdictFromCompletion(merged, "cot-score-logit")).toThrow(/inside the token/);
  });
  it("sampled modes parse the text and fail on text without a score", () => {
    expect(
      verdictFromCompletion(completion([{ token: "Reasoning.\nScore: 2", logprob: 0 }]), "cot-score-sample")
        .score,
    ).toBeCloseTo(0.4, 12);
    expect(() =>
      verdictFromCompletion(completion([{ token: "excellent", logprob: 0 }]), "score-sample"),
    ).toThrow(/holds no score/);
  });
});
