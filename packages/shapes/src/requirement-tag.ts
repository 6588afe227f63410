import { applyEdit, type Edit, type SimpleEdit } from "./edit.js";
import { RequirementParseError, ShapesError } from "./errors.js";
import { COLOR_NAMES, type ColorName } from "./palette.js";
import { type Scene, SHAPE_KINDS, type Shape, type ShapeKind, validateScene } from "./scene.js";

/*
 * The compact, canonical text form of a scene and an edit:
 *
 *   [shapes:v1:<canvas>:<background>:<shape>,<shape>,…:<edit>]
 *   shape = <kind><colour><cell>.<size>       e.g. cr4.10 = red circle, centre cell, 10 px
 *   edit  = add.<shape> | remove.<cell> | replace.<cell>.<kind> | adjust.<cell>.<colour>
 *         | move.<cell>.<cell> | background.<colour> | extract.<cell> | <edit>+<edit> (compose)
 *
 * One letter per kind (c s t d) and colour (r g b y p o w k). Shapes are listed in cell order, so
 * one scene and edit have exactly one tag: it doubles as the canonical key of a sample.
 */

const KIND_CODES: Record<ShapeKind, string> = { circle: "c", square: "s", triangle: "t", diamond: "d" };
const COLOR_CODES: Record<ColorName, string> = {
  red: "r",
  green: "g",
  blue: "b",
  yellow: "y",
  purple: "p",
  orange: "o",
  white: "w",
  black: "k",
};
const KIND_BY_CODE = new Map(SHAPE_KINDS.map((k) => [KIND_CODES[k], k]));
const COLOR_BY_CODE = new Map(COLOR_NAMES.map((c) => [COLOR_CODES[c], c]));

export const REQUIREMENT_TAG_VERSION = "v1";

function shapeCode(s: Shape): string {
  return `${KIND_CODES[s.kind]}${COLOR_CODES[s.color]}${s.cell}.${s.size}`;
}

function simpleEditCode(e: SimpleEdit): string {
  switch (e.op) {
    case "add":
      return `add.${shapeCode(e.shape)}`;
    case "remove":
      return `remove.${e.cell}`;
    case "replace":
      return `replace.${e.cell}.${KIND_CODES[e.kind]}`;
    case "adjust":
      return `adjust.${e.cell}.${COLOR_CODES[e.color]}`;
    case "move":
      return `move.${e.cell}.${e.to}`;
    case "background":
      return `background.${COLOR_CODES[e.color]}`;
    case "extract":
      return `extract.${e.cell}`;
  }
}

/** The tag body without brackets: the canonical key of (scene, edit). */
export function canonicalKey(scene: Scene, edit: Edit): string {
  const edits = edit.op === "compose" ? edit.edits : [edit];
  return [
    "shapes",
    REQUIREMENT_TAG_VERSION,
    String(scene.canvas),
    COLOR_CODES[scene.background],
    scene.shapes.map(shapeCode).join(","),
    edits.map(simpleEditCode).join("+"),
  ].join(":");
}

/** `[shapes:v1:…]`, see the format above. */
export function formatRequirementTag(scene: Scene, edit: Edit): string {
  return `[${canonicalKey(scene, edit)}]`;
}

function fail(tag: string, why: string): never {
  throw new RequirementParseError(
    `requirement tag [${tag}]: ${why}. Expected [shapes:v1:<canvas>:<bg>:<shapes>:<edit>] as written by requirementFor().`,
  );
}

function kindOf(code: string, tag: string): ShapeKind {
  return KIND_BY_CODE.get(code) ?? fail(tag, `unknown kind code "${code}"`);
}
function colorOf(code: string, tag: string): ColorName {
  return COLOR_BY_CODE.get(code) ?? fail(tag, `unknown colour code "${code}"`);
}

const SHAPE_RE = /^([a-z])([a-z])([0-8])\.(\d{1,4})$/;

function parseShape(code: string, tag: string): Shape {
  const m = SHAPE_RE.exec(code) ?? fail(tag, `bad shape code "${code}"`);
  return { kind: kindOf(m[1]!, tag), color: colorOf(m[2]!, tag), cell: Number(m[3]), size: Number(m[4]) };
}

function parseSimpleEdit(code: string, tag: string): SimpleEdit {
  const [op, ...args] = code.split(".");
  const cell = (s: string | undefined) =>
    s && /^[0-8]$/.test(s) ? Number(s) : fail(tag, `bad cell in "${code}"`);
  const arity = (n: number) => {
    if (args.length !== n) fail(tag, `"${op}" takes ${n} argument(s) in "${code}"`);
  };
  switch (op) {
    case "add":
      arity(2);
      return { op, shape: parseShape(args.join("."), tag) };
    case "remove":
    case "extract":
      arity(1);
      return { op, cell: cell(args[0]) };
    case "replace":
      arity(2);
      return { op, cell: cell(args[0]), kind: kindOf(args[1]!, tag) };
    case "adjust":
      arity(2);
      return { op, cell: cell(args[0]), color: colorOf(args[1]!, tag) };
    case "move":
      arity(2);
      return { op, cell: cell(args[0]), to: cell(args[1]) };
    case "background":
      arity(1);
      return { op, color: colorOf(args[0]!, tag) };
    default:
      return fail(tag, `unknown edit "${op}"`);
  }
}

export interface ParsedRequirement {
  /** The source scene the edit is applied to. */
  scene: Scene;
  edit: Edit;
  /** applyEdit(scene, edit): what a perfect edit shows. */
  target: Scene;
}

const TAG_RE = /\[shapes:(v\d+):([^\]\s]*)\]/g;

/**
 * Recovers the source scene, the edit and the exact target from a requirement string (the last
 * `[shapes:v1:…]` tag in it wins). Throws RequirementParseError when there is no tag, it is of
 * another version, or it does not describe a valid scene and edit.
 */
export function parseRequirement(requirement: string): ParsedRequirement {
  if (typeof requirement !== "string") {
    throw new RequirementParseError(`requirement must be a string, got ${typeof requirement}.`);
  }
  const matches = [...requirement.matchAll(TAG_RE)];
  const last = matches.at(-1);
  if (!last) {
    throw new RequirementParseError(
      `requirement has no [shapes:v1:…] tag: ${JSON.stringify(requirement.slice(0, 120))}. ` +
        "Only requirements written by requirementFor() (the shapes data sets) can be judged exactly.",
    );
  }
  const tag = last[0].slice(1, -1);
  if (last[1] !== REQUIREMENT_TAG_VERSION) fail(tag, `version ${last[1]} is not supported (only v1)`);
  const fields = last[2]!.split(":");
  if (fields.length !== 4) fail(tag, `expected 4 fields after the version, got ${fields.length}`);
  const [canvasText, bgCode, shapesText, editText] = fields as [string, string, string, string];
  if (!/^\d{1,4}$/.test(canvasText)) fail(tag, `bad canvas "${canvasText}"`);
  const scene: Scene = {
    canvas: Number(canvasText),
    background: colorOf(bgCode, tag),
    shapes: shapesText === "" ? [] : shapesText.split(",").map((s) => parseShape(s, tag)),
  };
  const parts = editText.split("+").map((e) => parseSimpleEdit(e, tag));
  if (parts.length > 2) fail(tag, "a compose edit has exactly two parts");
  const edit: Edit = parts.length === 2 ? { op: "compose", edits: [parts[0]!, parts[1]!] } : parts[0]!;
  try {
    validateScene(scene, "tag scene");
    return { scene, edit, target: applyEdit(scene, edit) };
  } catch (e) {
    if (e instanceof ShapesError) fail(tag, e.message);
    throw e;
  }
}
