import type { Edit, SimpleEdit } from "./edit.js";
import { applyEdit } from "./edit.js";
import { InvalidEditError } from "./errors.js";
import { formatRequirementTag } from "./requirement-tag.js";
import { CELL_NAMES, type Scene, type Shape, shapeAt, shapeName } from "./scene.js";

function named(scene: Scene, cell: number): Shape {
  const s = shapeAt(scene, cell);
  if (!s) throw new InvalidEditError(`no shape in cell ${cell} (${CELL_NAMES[cell] ?? "not a cell"}).`);
  return s;
}

/** "a red circle", "an orange square". */
function aShape(color: string, kind: string): string {
  return `${/^[aeiou]/.test(color) ? "an" : "a"} ${color} ${kind}`;
}

function simpleInstruction(scene: Scene, edit: SimpleEdit): string {
  switch (edit.op) {
    case "add":
      return `add ${aShape(edit.shape.color, edit.shape.kind)} at the ${CELL_NAMES[edit.shape.cell]}`;
    case "remove":
      return `remove the ${shapeName(named(scene, edit.cell))}`;
    case "replace": {
      const s = named(scene, edit.cell);
      return `replace the ${shapeName(s)} with ${aShape(s.color, edit.kind)}`;
    }
    case "adjust":
      return `change the ${shapeName(named(scene, edit.cell))} to ${edit.color}`;
    case "move":
      return `move the ${shapeName(named(scene, edit.cell))} to the ${CELL_NAMES[edit.to]}`;
    case "background":
      return `make the background ${edit.color}`;
    case "extract":
      return `extract the ${shapeName(named(scene, edit.cell))} onto a white background`;
  }
}

/**
 * The instruction text of an edit: fixed English templates over the closed VOCABULARY. Compose
 * edits join both halves with "and"; both are phrased against the source scene.
 */
export function instructionFor(scene: Scene, edit: Edit): string {
  applyEdit(scene, edit); // refuse to describe an edit that does not apply
  if (edit.op === "compose") {
    return edit.edits.map((e) => simpleInstruction(scene, e)).join(" and ");
  }
  return simpleInstruction(scene, edit);
}

function simpleRequirement(scene: Scene, edit: SimpleEdit): string {
  switch (edit.op) {
    case "add":
      return `a new ${shapeName(edit.shape)} of the largest shape size must appear at the ${CELL_NAMES[edit.shape.cell]} of the image`;
    case "remove":
      return `the ${shapeName(named(scene, edit.cell))} must be gone, its place showing the ${scene.background} background`;
    case "replace": {
      const s = named(scene, edit.cell);
      return `the ${shapeName(s)} must become ${aShape(s.color, edit.kind)} of the same size in the same place`;
    }
    case "adjust":
      return `the ${shapeName(named(scene, edit.cell))} must turn ${edit.color}, keeping its shape, size and place`;
    case "move":
      return (
        `the ${shapeName(named(scene, edit.cell))} must move to the ${CELL_NAMES[edit.to]} of the image, ` +
        `keeping its shape, size and colour, its old place showing the background`
      );
    case "background":
      return `the background must become ${edit.color} everywhere`;
    case "extract":
      return `only the ${shapeName(named(scene, edit.cell))} may remain, in the same place and size, on a plain white background`;
  }
}

/**
 * The per-sample requirement (Edit-R1's "requirement" field): a sentence for a human or MLLM
 * judge, then a `[shapes:v1:…]` tag that encodes the source scene and the edit exactly, so a judge
 * that sees only text and images can rebuild the target (parseRequirement).
 */
export function requirementFor(scene: Scene, edit: Edit): string {
  applyEdit(scene, edit);
  const parts = edit.op === "compose" ? edit.edits : [edit];
  const what = parts.map((e) => simpleRequirement(scene, e)).join("; and ");
  const rest =
    edit.op === "extract"
      ? "The kept shape keeps its kind and colour."
      : "Nothing else may change: the other shapes keep their kind, colour, size and place.";
  return (
    `${what[0]!.toUpperCase()}${what.slice(1)}. ${rest} Shapes are flat colours without outlines or ` +
    `shading. Exact check: ${formatRequirementTag(scene, edit)}`
  );
}
