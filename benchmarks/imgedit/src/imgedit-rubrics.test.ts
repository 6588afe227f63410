import { describe, expect, it } from "vitest";
import {
  IMGEDIT_CATEGORIES,
  IMGEDIT_CATEGORY_NAMES,
  IMGEDIT_RUBRICS,
  isImgEditCategory,
  renderImgEditPrompt,
} from "./imgedit-rubrics.js";
import { parseImgEditReply } from "./parse-imgedit-reply.js";

describe("ImgEdit rubrics", () => {
  it("cover the nine Basic edit types, with compose shown as Hybrid", () => {
    expect([...IMGEDIT_CATEGORIES].sort()).toEqual(
      ["action", "add", "adjust", "background", "compose", "extract", "remove", "replace", "style"].sort(),
    );
    expect(IMGEDIT_CATEGORY_NAMES.compose).toBe("Hybrid");
    expect(isImgEditCategory("alter")).toBe(false);
    expect(isImgEditCategory("adjust")).toBe(true);
  });

  it.each(IMGEDIT_CATEGORIES)("%s: three distinct criteria with five distinct level anchors each", (c) => {
    const rubric = IMGEDIT_RUBRICS[c];
    expect(rubric.category).toBe(c);
    expect(rubric.criteria).toHaveLength(3);
    expect(new Set(rubric.criteria.map((k) => k.label)).size).toBe(3);
    for (const criterion of rubric.criteria) {
      expect(criterion.levels).toHaveLength(5);
      expect(new Set(criterion.levels).size).toBe(5);
      // A label containing ": " would make the judge's score line unparseable.
      expect(criterion.label).not.toContain(": ");
    }
  });

  it.each(IMGEDIT_CATEGORIES)("%s: the prompt carries instruction, cap rule and the reply format", (c) => {
    const text = renderImgEditPrompt(c, "Make the sky purple.");
    const labels = IMGEDIT_RUBRICS[c].criteria.map((k) => k.label);
    expect(text).toContain("Editing instruction: Make the sky purple.");
    expect(text).toContain("Brief reasoning:");
    expect(text).toMatch(/must not be higher than/);
    for (const label of labels) expect(text).toContain(`${label}: <1-5>`);
    expect(text).not.toContain("<edit_prompt>");
    // The format the prompt asks for is exactly what the parser reads.
    const reply = ["Brief reasoning: fine", ...labels.map((l) => `${l}: 4`)].join("\n");
    expect(parseImgEditReply(reply).labels).toEqual(labels);
  });

  it("describes the two images actually sent, also for style and extract", () => {
    for (const c of IMGEDIT_CATEGORIES) {
      expect(IMGEDIT_RUBRICS[c].images).toMatch(/two images: first the original image/);
      expect(IMGEDIT_RUBRICS[c].images).not.toMatch(/three images|reference style image/i);
    }
  });
});
