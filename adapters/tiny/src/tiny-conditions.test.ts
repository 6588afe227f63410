import { generateEdits, tokenize, VOCABULARY } from "@edit-r1/shapes";
import { describe, expect, it } from "vitest";
import { TinyAdapterError } from "./errors.js";
import { packImage } from "./pack-image.js";
import { tinyConditions, tinyWordIds } from "./tiny-conditions.js";
import { TINY_IMAGE_SIZE, TINY_LATENT_SIZE } from "./tiny-config.js";

describe("tiny conditioning", () => {
  it("agrees with the shapes tokenizer on generated instructions", () => {
    for (const e of generateEdits({ seed: 2, count: 16, split: "train", size: TINY_IMAGE_SIZE })) {
      expect(tinyWordIds(e.instruction, VOCABULARY, 20)).toEqual(tokenize(e.instruction));
    }
  });

  it("packs sources and one-hot words batch-first", () => {
    const edits = generateEdits({ seed: 3, count: 2, split: "heldout", size: TINY_IMAGE_SIZE });
    const requests = edits.map((e) => ({ key: e.key, instruction: e.instruction, source: e.source }));
    const { context, text } = tinyConditions(requests, VOCABULARY, 20);
    const V = VOCABULARY.length;
    expect(context.subarray(TINY_LATENT_SIZE)).toEqual(packImage(edits[1]!.source));
    const ids = tokenize(edits[1]!.instruction);
    for (let i = 0; i < 20; i++) {
      const row = text.subarray((20 + i) * V, (21 + i) * V);
      expect(row.indexOf(1)).toBe(ids[i]);
      expect(row.reduce((a, b) => a + b, 0)).toBe(1);
    }
  });

  it("refuses unknown words, too many words and empty instructions", () => {
    expect(() => tinyWordIds("add a purple blob", VOCABULARY, 20)).toThrow(/"blob"/);
    expect(() => tinyWordIds("add a red circle", VOCABULARY, 3)).toThrow(TinyAdapterError);
    expect(() => tinyWordIds(" ... ", VOCABULARY, 20)).toThrow(/empty/);
  });
});
