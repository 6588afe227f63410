import { describe, expect, it } from "vitest";
import { parseVieScoreReply, VieScoreReplyError } from "./parse-viescore-reply.js";

describe("parseVieScoreReply", () => {
  it.each([
    ["a plain JSON object", '{"score": [7, 3], "reasoning": "ok"}', [7, 3]],
    [
      "JSON inside a fenced block with prose",
      'Here:\n```json\n{\n  "score": [8, 9],\n  "reasoning": "fine"\n}\n```',
      [8, 9],
    ],
    [
      "the text between two delimiters",
      'x ||V^=^V|| {"score": [2, 10]} ||V^=^V|| {"score": [0, 0]}',
      [2, 10],
    ],
    ["bare keys (repaired)", '{score: [5, 6], reasoning: "short"}', [5, 6]],
    ["a bare list without braces", "score is [4, 1]", [4, 1]],
    ["fractional scores", '{"score": [7.5, 8]}', [7.5, 8]],
  ])("reads %s", (_what, reply, expected) => {
    expect(parseVieScoreReply(reply)).toEqual(expected);
  });

  it.each([
    ["an empty reply (an API error upstream)", ""],
    ["a refusal", "I'm sorry, I can't assist with that request."],
    ["a single bare number", "7"],
    ["a single score in JSON (repaired into a one-element list)", '{"score": 7}'],
    ["three scores", '{"score": [7, 8, 9]}'],
    ["a score above 10", '{"score": [11, 3]}'],
    ["a negative score", '{"score": [-1, 3]}'],
    ["scores as strings", '{"score": ["7", "8"]}'],
    ["no score key", '{"rating": [7, 8]}'],
    ["broken JSON", '{"score": [7, 8'],
  ])("rejects %s instead of inventing a score", (_what, reply) => {
    expect(() => parseVieScoreReply(reply)).toThrow(VieScoreReplyError);
  });

  it("keeps the raw reply on the error", () => {
    const err = (() => {
      try {
        parseVieScoreReply("nope");
      } catch (e) {
        return e as VieScoreReplyError;
      }
    })();
    expect(err?.reply).toBe("nope");
    expect(err?.message).toMatch(/"nope"/);
  });
});
