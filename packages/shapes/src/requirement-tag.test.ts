import { describe, expect, it } from "vitest";
import { EDIT_CATEGORIES } from "./edit.js";
import { RequirementParseError } from "./errors.js";
import { generateEdits } from "./generate-edits.js";
import { canonicalKey, formatRequirementTag, parseRequirement } from "./requirement-tag.js";

describe("requirement tag", () => {
  const edits = generateEdits({ seed: 11, count: 160, split: "train" });

  it("round-trips scene, edit and target for every category", () => {
    expect(new Set(edits.map((e) => e.category))).toEqual(new Set(EDIT_CATEGORIES));
    for (const e of edits) {
      const parsed = parseRequirement(e.requirement);
      expect(parsed.scene).toEqual(e.scene);
      expect(parsed.edit).toEqual(e.edit);
      expect(parsed.target).toEqual(e.targetScene);
    }
  });

  it("works at other canvas sizes", () => {
    for (const e of generateEdits({ seed: 2, count: 16, split: "heldout", size: 48 })) {
      expect(parseRequirement(e.requirement).target).toEqual(e.targetScene);
      expect(e.scene.canvas).toBe(48);
    }
  });

  it("is canonical: the key depends only on the scene and edit", () => {
    const e = edits[5]!;
    const copy = structuredClone({ scene: e.scene, edit: e.edit });
    expect(canonicalKey(copy.scene, copy.edit)).toBe(e.canonicalKey);
    expect(new Set(edits.map((x) => x.canonicalKey)).size).toBe(edits.length);
  });

  it("reads the last tag when text around it changes", () => {
    const e = edits[0]!;
    const other = edits[1]!;
    const text = `Judge carefully ${formatRequirementTag(other.scene, other.edit)} then ${formatRequirementTag(e.scene, e.edit)}.`;
    expect(parseRequirement(text).edit).toEqual(e.edit);
  });

  const bad = [
    ["no tag", "Only the red circle must change."],
    ["another version", "[shapes:v2:32:w:cr0.9:remove.0]"],
    ["unknown colour code", "[shapes:v1:32:z:cr0.9:remove.0]"],
    ["unknown kind code", "[shapes:v1:32:w:xr0.9:remove.0]"],
    ["unknown edit", "[shapes:v1:32:w:cr0.9:explode.0]"],
    ["wrong arity", "[shapes:v1:32:w:cr0.9:move.0]"],
    ["missing field", "[shapes:v1:32:w:remove.0]"],
    ["an invalid scene", "[shapes:v1:32:w:cw0.9:remove.0]"],
    ["an edit that does not apply", "[shapes:v1:32:w:cr0.9:remove.4]"],
    ["three compose parts", "[shapes:v1:32:w:cr0.9:remove.0+background.b+add.sb4.10]"],
  ];
  it.each(bad)("rejects %s", (_, text) => {
    expect(() => parseRequirement(text)).toThrow(RequirementParseError);
  });
});
