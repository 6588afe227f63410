import { describe, expect, it } from "vitest";
import { InstructionTooLongError } from "./errors.js";
import { generateEdits } from "./generate-edits.js";
import {
  instructionWords,
  MAX_INSTRUCTION_TOKENS,
  PAD_ID,
  tokenize,
  UNKNOWN_ID,
  unknownWords,
  VOCABULARY,
} from "./vocabulary.js";

describe("vocabulary", () => {
  it("has no duplicate words and reserves pad and unknown ids", () => {
    expect(new Set(VOCABULARY).size).toBe(VOCABULARY.length);
    expect(VOCABULARY[PAD_ID]).toBe("<pad>");
    expect(VOCABULARY[UNKNOWN_ID]).toBe("<unk>");
  });

  it("covers every generated instruction, within the token limit", () => {
    const edits = [
      ...generateEdits({ seed: 5, count: 400, split: "train" }),
      ...generateEdits({ seed: 5, count: 100, split: "heldout" }),
    ];
    for (const e of edits) {
      expect(unknownWords(e.instruction)).toEqual([]);
      const ids = tokenize(e.instruction);
      expect(ids.length).toBe(MAX_INSTRUCTION_TOKENS);
      expect(Array.from(ids)).not.toContain(UNKNOWN_ID);
    }
  });
});

describe("tokenize", () => {
  it("maps words to their vocabulary index and pads", () => {
    const ids = tokenize("Remove the red circle.");
    expect(Array.from(ids.slice(0, 4)).map((i) => VOCABULARY[i])).toEqual(["remove", "the", "red", "circle"]);
    expect(Array.from(ids.slice(4)).every((i) => i === PAD_ID)).toBe(true);
  });
  it("marks unknown words", () => {
    expect(unknownWords("paint the red circle")).toEqual(["paint"]);
    expect(tokenize("paint the red circle")[0]).toBe(UNKNOWN_ID);
  });
  it("refuses to truncate", () => {
    const long = Array(MAX_INSTRUCTION_TOKENS + 1)
      .fill("red")
      .join(" ");
    expect(() => tokenize(long)).toThrow(InstructionTooLongError);
    expect(tokenize(long, 32).length).toBe(32);
    expect(instructionWords("  add, a  RED circle!  ")).toEqual(["add", "a", "red", "circle"]);
  });
});
