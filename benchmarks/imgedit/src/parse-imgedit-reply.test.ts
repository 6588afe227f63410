import { describe, expect, it } from "vitest";
import { ImgEditReplyError, parseImgEditReply } from "./parse-imgedit-reply.js";

describe("parseImgEditReply", () => {
  it("reads the three Label: n lines of a well-formed reply, ignoring the reasoning line", () => {
    const r = parseImgEditReply(
      "Brief reasoning: dog added: looks fine\nPrompt Compliance: 4\nVisual Naturalness: 3\nPhysical & Detail Coherence: 2",
    );
    expect(r.raw).toEqual([4, 3, 2]);
    expect(r.scores).toEqual([4, 3, 2]);
    expect(r.labels).toEqual(["Prompt Compliance", "Visual Naturalness", "Physical & Detail Coherence"]);
    expect(r.mean).toBeCloseTo(3, 12);
    expect(r.capped).toBe(false);
  });

  it("caps the second and third scores at the first, and says so", () => {
    const r = parseImgEditReply("Brief reasoning: x\nA: 2\nB: 5\nC: 1");
    expect(r.raw).toEqual([2, 5, 1]);
    expect(r.scores).toEqual([2, 2, 1]);
    expect(r.mean).toBeCloseTo(5 / 3, 12);
    expect(r.capped).toBe(true);
    const uncapped = parseImgEditReply("A: 2\nB: 5\nC: 1", { enforceCap: false });
    expect(uncapped.scores).toEqual([2, 5, 1]);
    expect(uncapped.capped).toBe(false);
  });

  it("accepts CRLF line ends and surrounding spaces", () => {
    expect(parseImgEditReply("  A: 5 \r\nB: 5\r\n\tC: 4").scores).toEqual([5, 5, 4]);
  });

  it.each([
    ["markdown bold labels", "**A:** 4\n**B:** 4\n**C:** 4"],
    ["fractions", "A: 4/5\nB: 4/5\nC: 4/5"],
    ["trailing dots", "A: 4.\nB: 4.\nC: 4."],
    ["two score lines", "A: 4\nB: 4"],
    ["four score lines", "A: 4\nB: 4\nC: 4\nD: 4"],
    ["an empty reply", ""],
    ["a refusal", "I'm sorry, I can't help with that."],
  ])("rejects %s instead of averaging what is left", (_what, reply) => {
    expect(() => parseImgEditReply(reply)).toThrow(ImgEditReplyError);
  });

  it("rejects scores outside 1–5 and keeps the raw reply on the error", () => {
    const reply = "A: 0\nB: 3\nC: 3";
    try {
      parseImgEditReply(reply);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ImgEditReplyError);
      expect((err as ImgEditReplyError).reply).toBe(reply);
      expect((err as Error).message).toMatch(/outside 1–5/);
    }
    expect(() => parseImgEditReply("A: 6\nB: 3\nC: 3")).toThrow(/outside 1–5/);
  });

  it("does not count a line with two ': ' separators, as the official split would not", () => {
    expect(() => parseImgEditReply("Note: A: 4\nA: 4\nB: 4")).toThrow(/found 2 score line/);
  });
});
