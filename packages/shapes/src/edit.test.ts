import { describe, expect, it } from "vitest";
import { applyEdit, type Edit } from "./edit.js";
import { InvalidEditError } from "./errors.js";
import { instructionFor, requirementFor } from "./instruction.js";
import type { Scene } from "./scene.js";

const scene: Scene = {
  canvas: 32,
  background: "white",
  shapes: [
    { kind: "circle", color: "red", cell: 0, size: 9 },
    { kind: "square", color: "green", cell: 4, size: 10 },
  ],
};
const [circle, square] = scene.shapes as [Scene["shapes"][0], Scene["shapes"][0]];

describe("applyEdit", () => {
  const cases: [Edit, Scene, string][] = [
    [
      { op: "add", shape: { kind: "triangle", color: "yellow", cell: 2, size: 10 } },
      { ...scene, shapes: [circle, { kind: "triangle", color: "yellow", cell: 2, size: 10 }, square] },
      "add a yellow triangle at the top right",
    ],
    [{ op: "remove", cell: 4 }, { ...scene, shapes: [circle] }, "remove the green square"],
    [
      { op: "replace", cell: 0, kind: "diamond" },
      { ...scene, shapes: [{ ...circle, kind: "diamond" }, square] },
      "replace the red circle with a red diamond",
    ],
    [
      { op: "adjust", cell: 0, color: "orange" },
      { ...scene, shapes: [{ ...circle, color: "orange" }, square] },
      "change the red circle to orange",
    ],
    [
      { op: "move", cell: 0, to: 8 },
      { ...scene, shapes: [square, { ...circle, cell: 8 }] },
      "move the red circle to the bottom right",
    ],
    [{ op: "background", color: "blue" }, { ...scene, background: "blue" }, "make the background blue"],
    [
      { op: "extract", cell: 4 },
      { ...scene, background: "white", shapes: [square] },
      "extract the green square onto a white background",
    ],
    [
      {
        op: "compose",
        edits: [
          { op: "adjust", cell: 4, color: "blue" },
          { op: "background", color: "black" },
        ],
      },
      { ...scene, background: "black", shapes: [circle, { ...square, color: "blue" }] },
      "change the green square to blue and make the background black",
    ],
  ];
  it.each(cases)("applies %j", (edit, expected, instruction) => {
    expect(applyEdit(scene, edit)).toEqual(expected);
    expect(instructionFor(scene, edit)).toBe(instruction);
    expect(requirementFor(scene, edit)).toContain("[shapes:v1:");
  });

  it("uses 'an' before vowels", () => {
    expect(
      instructionFor(scene, { op: "add", shape: { kind: "circle", color: "orange", cell: 5, size: 10 } }),
    ).toBe("add an orange circle at the right");
  });

  it("does not modify its input", () => {
    const copy = structuredClone(scene);
    applyEdit(scene, { op: "move", cell: 0, to: 8 });
    expect(scene).toEqual(copy);
  });

  const invalid: [string, Edit][] = [
    ["an empty cell", { op: "remove", cell: 8 }],
    ["a taken cell on add", { op: "add", shape: { kind: "circle", color: "blue", cell: 4, size: 10 } }],
    ["a taken target cell on move", { op: "move", cell: 0, to: 4 }],
    ["a no-op replace", { op: "replace", cell: 0, kind: "circle" }],
    ["a no-op adjust", { op: "adjust", cell: 0, color: "red" }],
    ["an invisible result", { op: "adjust", cell: 0, color: "white" }],
    ["a background hiding a shape", { op: "background", color: "red" }],
    ["an ambiguous result", { op: "replace", cell: 4, kind: "circle" } as Edit],
    [
      "compose touching one cell twice",
      {
        op: "compose",
        edits: [
          { op: "adjust", cell: 0, color: "blue" },
          { op: "move", cell: 0, to: 8 },
        ],
      },
    ],
    [
      "compose of one category",
      {
        op: "compose",
        edits: [
          { op: "adjust", cell: 0, color: "blue" },
          { op: "adjust", cell: 4, color: "black" },
        ],
      },
    ],
    [
      "compose whose second part hides the first",
      {
        op: "compose",
        edits: [
          { op: "adjust", cell: 0, color: "blue" },
          { op: "background", color: "blue" },
        ],
      },
    ],
  ];
  it.each(invalid)("rejects %s", (_, edit) => {
    // "an ambiguous result": a red circle already exists, so a second would make names ambiguous
    const s: Scene =
      _ === "an ambiguous result" ? { ...scene, shapes: [circle, { ...square, color: "red" }] } : scene;
    expect(() => applyEdit(s, edit)).toThrow(InvalidEditError);
  });
});
