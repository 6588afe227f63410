import { InvalidSceneError } from "./errors.js";
import { type ColorName, isColorName } from "./palette.js";

export const SHAPE_KINDS = ["circle", "square", "triangle", "diamond"] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/**
 * Shapes sit in the cells of a 3×3 grid, so every position has a short English name
 * ("add … at the top left") and the target of a move or an add is exact.
 * Cell index = 3 × row + column.
 */
export const CELL_NAMES = [
  "top left",
  "top",
  "top right",
  "left",
  "center",
  "right",
  "bottom left",
  "bottom",
  "bottom right",
] as const;
export type CellName = (typeof CELL_NAMES)[number];
export const CELL_COUNT = CELL_NAMES.length;

export interface Shape {
  kind: ShapeKind;
  color: ColorName;
  /** Grid cell 0..8 (3 × row + column). */
  cell: number;
  /** Side of the shape's bounding box in pixels; see shapeSizeRange. */
  size: number;
}

/** A square canvas of flat background colour with shapes in distinct grid cells, sorted by cell. */
export interface Scene {
  /** Canvas side in pixels (images are canvas × canvas). */
  canvas: number;
  background: ColorName;
  shapes: Shape[];
}

export const DEFAULT_CANVAS = 32;
/** Below this the shapes (a quarter of the canvas) are too small to tell a triangle from a diamond. */
export const MIN_CANVAS = 16;
export const MAX_CANVAS = 1024;

/**
 * Allowed shape sizes for a canvas: from a quarter to a third of it (8–10 px at 32×32). A third is
 * the largest size at which shapes in neighbouring cells never touch, so scenes never overlap.
 */
export function shapeSizeRange(canvas: number): { min: number; max: number } {
  return { min: Math.ceil(canvas / 4), max: Math.floor(canvas / 3) };
}

/** The size an added shape takes (the instruction names no size, so it must be fixed). */
export function defaultShapeSize(canvas: number): number {
  return shapeSizeRange(canvas).max;
}

/** Top-left pixel of a shape's bounding box: the box is centred on its cell's centre. */
export function shapeOrigin(canvas: number, shape: Pick<Shape, "cell" | "size">): { x: number; y: number } {
  const col = shape.cell % 3;
  const row = Math.floor(shape.cell / 3);
  const at = (i: number) => Math.round((canvas * (2 * i + 1)) / 6 - shape.size / 2);
  return { x: at(col), y: at(row) };
}

export function isShapeKind(value: unknown): value is ShapeKind {
  return typeof value === "string" && (SHAPE_KINDS as readonly string[]).includes(value);
}

/** "the red circle": shapes are named by colour and kind, which validateScene keeps unique. */
export function shapeName(shape: Pick<Shape, "color" | "kind">): string {
  return `${shape.color} ${shape.kind}`;
}

/**
 * Throws InvalidSceneError unless the scene follows the world's rules: canvas in range, known
 * colours and kinds, sizes in shapeSizeRange, distinct cells in ascending order (the canonical
 * order), no shape in the background colour, and no two shapes with the same colour and kind
 * (so "the red circle" always names exactly one shape).
 */
export function validateScene(scene: Scene, what = "scene"): void {
  const { canvas, background, shapes } = scene;
  if (!Number.isInteger(canvas) || canvas < MIN_CANVAS || canvas > MAX_CANVAS) {
    throw new InvalidSceneError(
      `${what}: canvas must be an integer in [${MIN_CANVAS}, ${MAX_CANVAS}], got ${canvas}.`,
    );
  }
  if (!isColorName(background)) {
    throw new InvalidSceneError(`${what}: unknown background colour ${JSON.stringify(background)}.`);
  }
  if (!Array.isArray(shapes)) throw new InvalidSceneError(`${what}: shapes must be an array.`);
  const { min, max } = shapeSizeRange(canvas);
  const names = new Set<string>();
  let lastCell = -1;
  for (const [i, s] of shapes.entries()) {
    const label = `${what}.shapes[${i}]`;
    if (!isShapeKind(s.kind))
      throw new InvalidSceneError(`${label}: unknown kind ${JSON.stringify(s.kind)}.`);
    if (!isColorName(s.color)) {
      throw new InvalidSceneError(`${label}: unknown colour ${JSON.stringify(s.color)}.`);
    }
    if (!Number.isInteger(s.cell) || s.cell < 0 || s.cell >= CELL_COUNT) {
      throw new InvalidSceneError(`${label}: cell must be an integer in [0, 8], got ${s.cell}.`);
    }
    if (s.cell <= lastCell) {
      throw new InvalidSceneError(
        `${label}: cells must be distinct and ascending (canonical order), got ${s.cell} after ${lastCell}; sort with sortShapes().`,
      );
    }
    lastCell = s.cell;
    if (!Number.isInteger(s.size) || s.size < min || s.size > max) {
      throw new InvalidSceneError(
        `${label}: size must be an integer in [${min}, ${max}] for a ${canvas}-pixel canvas, got ${s.size}.`,
      );
    }
    if (s.color === background) {
      throw new InvalidSceneError(`${label}: a ${s.color} shape on a ${background} background is invisible.`);
    }
    const name = shapeName(s);
    if (names.has(name)) throw new InvalidSceneError(`${label}: two shapes are both "the ${name}".`);
    names.add(name);
  }
}

/** Shapes in canonical (cell) order, copied. */
export function sortShapes(shapes: readonly Shape[]): Shape[] {
  return shapes.map((s) => ({ ...s })).sort((a, b) => a.cell - b.cell);
}

export function shapeAt(scene: Scene, cell: number): Shape | undefined {
  return scene.shapes.find((s) => s.cell === cell);
}
