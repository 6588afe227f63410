import { InvalidEditError, ShapesError } from "./errors.js";
import type { ColorName } from "./palette.js";
import {
  CELL_NAMES,
  type Scene,
  type Shape,
  type ShapeKind,
  shapeAt,
  shapeName,
  sortShapes,
  validateScene,
} from "./scene.js";

/**
 * The edit categories, named after ImgEdit's edit types where one fits (add, remove, replace,
 * adjust, background, extract; compose is ImgEdit's "hybrid") plus move, which a grid world makes exact.
 */
export const EDIT_CATEGORIES = [
  "add",
  "remove",
  "replace",
  "adjust",
  "move",
  "background",
  "extract",
  "compose",
] as const;
export type EditCategory = (typeof EDIT_CATEGORIES)[number];

/** One edit, as data. Shapes are referred to by their cell, which is unique in a scene. */
export type SimpleEdit =
  | { op: "add"; shape: Shape }
  | { op: "remove"; cell: number }
  | { op: "replace"; cell: number; kind: ShapeKind }
  | { op: "adjust"; cell: number; color: ColorName }
  | { op: "move"; cell: number; to: number }
  | { op: "background"; color: ColorName }
  /** Keep only this shape, on a white background (ImgEdit's "extract" isolates an object). */
  | { op: "extract"; cell: number };

/** Two simple edits applied in order; both are phrased against the source scene. */
export type ComposeEdit = { op: "compose"; edits: [SimpleEdit, SimpleEdit] };
export type Edit = SimpleEdit | ComposeEdit;

function need(scene: Scene, cell: number, op: string): Shape {
  const shape = shapeAt(scene, cell);
  if (!shape) {
    throw new InvalidEditError(`${op}: no shape in cell ${cell} (${CELL_NAMES[cell] ?? "not a cell"}).`);
  }
  return shape;
}

function applySimple(scene: Scene, edit: SimpleEdit): Scene {
  const others = (cell: number) => scene.shapes.filter((s) => s.cell !== cell);
  switch (edit.op) {
    case "add":
      if (shapeAt(scene, edit.shape.cell)) {
        throw new InvalidEditError(`add: cell ${edit.shape.cell} (${CELL_NAMES[edit.shape.cell]}) is taken.`);
      }
      return { ...scene, shapes: sortShapes([...scene.shapes, edit.shape]) };
    case "remove":
      need(scene, edit.cell, "remove");
      return { ...scene, shapes: sortShapes(others(edit.cell)) };
    case "replace": {
      const s = need(scene, edit.cell, "replace");
      if (s.kind === edit.kind) throw new InvalidEditError(`replace: the shape is already a ${s.kind}.`);
      return { ...scene, shapes: sortShapes([...others(edit.cell), { ...s, kind: edit.kind }]) };
    }
    case "adjust": {
      const s = need(scene, edit.cell, "adjust");
      if (s.color === edit.color) throw new InvalidEditError(`adjust: the shape is already ${s.color}.`);
      return { ...scene, shapes: sortShapes([...others(edit.cell), { ...s, color: edit.color }]) };
    }
    case "move": {
      const s = need(scene, edit.cell, "move");
      if (shapeAt(scene, edit.to)) {
        throw new InvalidEditError(`move: target cell ${edit.to} (${CELL_NAMES[edit.to]}) is taken.`);
      }
      return { ...scene, shapes: sortShapes([...others(edit.cell), { ...s, cell: edit.to }]) };
    }
    case "background":
      if (scene.background === edit.color) {
        throw new InvalidEditError(`background: it is already ${edit.color}.`);
      }
      return { ...scene, background: edit.color, shapes: sortShapes(scene.shapes) };
    case "extract": {
      const s = need(scene, edit.cell, "extract");
      return { ...scene, background: "white", shapes: [{ ...s }] };
    }
  }
}

/**
 * The target scene of an edit. Throws InvalidEditError when the edit does not apply, or when its
 * result breaks the scene rules (an invisible shape, two shapes with the same name, …), so every
 * target is again a valid scene whose shapes can be named unambiguously.
 */
export function applyEdit(scene: Scene, edit: Edit): Scene {
  validateScene(scene, "source scene");
  const result =
    edit.op === "compose" ? applyCompose(scene, edit) : guard(() => applySimple(scene, edit), edit.op);
  guard(() => validateScene(result, `target of ${edit.op}`), edit.op);
  return result;
}

function guard<T>(fn: () => T, op: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof InvalidEditError) throw e;
    if (e instanceof ShapesError) throw new InvalidEditError(`${op}: ${e.message}`);
    throw e;
  }
}

function applyCompose(scene: Scene, edit: ComposeEdit): Scene {
  const [first, second] = edit.edits ?? [];
  if (!first || !second || edit.edits.length !== 2) {
    throw new InvalidEditError("compose: needs exactly two simple edits.");
  }
  if (first.op === second.op) throw new InvalidEditError(`compose: both edits are "${first.op}".`);
  if ((first.op as string) === "compose" || (second.op as string) === "compose") {
    throw new InvalidEditError("compose: cannot nest compose edits.");
  }
  if (first.op === "extract" || second.op === "extract") {
    throw new InvalidEditError("compose: extract removes everything else, so it cannot be combined.");
  }
  // Both halves are phrased against the source, so the second must not touch what the first made
  // or changed: the shape it names must still be the source's shape, and names must stay unique.
  const middle = applyEdit(scene, first);
  const touched = new Set(cellsTouched(first));
  for (const cell of cellsTouched(second)) {
    if (touched.has(cell)) throw new InvalidEditError("compose: both edits touch the same cell.");
  }
  if ("cell" in second) {
    const inSource = shapeAt(scene, second.cell);
    const inMiddle = shapeAt(middle, second.cell);
    if (!inSource || !inMiddle || shapeName(inSource) !== shapeName(inMiddle)) {
      throw new InvalidEditError("compose: the second edit's shape is not the same in the source.");
    }
  }
  const result = applyEdit(middle, second);
  const sourceNames = new Set(scene.shapes.map(shapeName));
  const created = [first, second].flatMap((e) => createdNames(scene, e));
  if (created.some((n) => sourceNames.has(n))) {
    throw new InvalidEditError("compose: an edit creates a shape named like one in the source.");
  }
  return result;
}

function cellsTouched(edit: SimpleEdit): number[] {
  switch (edit.op) {
    case "add":
      return [edit.shape.cell];
    case "move":
      return [edit.cell, edit.to];
    case "background":
      return [];
    default:
      return [edit.cell];
  }
}

function createdNames(scene: Scene, edit: SimpleEdit): string[] {
  switch (edit.op) {
    case "add":
      return [shapeName(edit.shape)];
    case "replace": {
      const s = shapeAt(scene, edit.cell);
      return s ? [shapeName({ color: s.color, kind: edit.kind })] : [];
    }
    case "adjust": {
      const s = shapeAt(scene, edit.cell);
      return s ? [shapeName({ color: edit.color, kind: s.kind })] : [];
    }
    default:
      return [];
  }
}

/** The category of an edit (its op). */
export function editCategory(edit: Edit): EditCategory {
  return edit.op;
}
