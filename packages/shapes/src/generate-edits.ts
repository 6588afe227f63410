import { applyEdit, EDIT_CATEGORIES, type Edit, type EditCategory, type SimpleEdit } from "./edit.js";
import { InvalidEditError, InvalidOptionsError, ShapesError } from "./errors.js";
import { instructionFor, requirementFor } from "./instruction.js";
import { COLOR_NAMES, type ColorName } from "./palette.js";
import { renderScene } from "./render-scene.js";
import { canonicalKey } from "./requirement-tag.js";
import type { RgbImage } from "./rgb-image.js";
import { Rng } from "./rng.js";
import {
  CELL_COUNT,
  DEFAULT_CANVAS,
  defaultShapeSize,
  MAX_CANVAS,
  MIN_CANVAS,
  type Scene,
  SHAPE_KINDS,
  type Shape,
  shapeName,
  shapeSizeRange,
  sortShapes,
} from "./scene.js";

export type Split = "train" | "heldout";

/** One generated sample: everything a trainer, judge or benchmark needs, target included. */
export interface ShapesEdit {
  /** Stable id, also the image file name: `shapes-<split>-<seed>-<index>`. */
  key: string;
  split: Split;
  category: EditCategory;
  instruction: string;
  /** Sentence plus `[shapes:v1:…]` tag (parseRequirement recovers scene, edit and target). */
  requirement: string;
  scene: Scene;
  edit: Edit;
  targetScene: Scene;
  source: RgbImage;
  target: RgbImage;
  /** canonicalKey(scene, edit): identical for identical (scene, instruction) pairs. */
  canonicalKey: string;
}

/** A scene with 1–3 shapes in distinct cells, each visible and uniquely named. */
export function randomScene(rng: Rng, canvas = DEFAULT_CANVAS): Scene {
  const background = rng.pick(COLOR_NAMES);
  const count = rng.int(1, 4);
  const cells = shuffled(rng, range(CELL_COUNT)).slice(0, count);
  const { min, max } = shapeSizeRange(canvas);
  const shapes: Shape[] = [];
  const names = new Set<string>();
  for (const cell of cells) {
    let shape: Shape;
    do {
      shape = {
        kind: rng.pick(SHAPE_KINDS),
        color: rng.pick(COLOR_NAMES.filter((c) => c !== background)),
        cell,
        size: rng.int(min, max + 1),
      };
    } while (names.has(shapeName(shape)));
    names.add(shapeName(shape));
    shapes.push(shape);
  }
  return { canvas, background, shapes: sortShapes(shapes) };
}

const COMPOSABLE = ["add", "remove", "replace", "adjust", "move", "background"] as const;

function proposeSimple(rng: Rng, scene: Scene, category: Exclude<EditCategory, "compose">): SimpleEdit {
  const taken = new Set(scene.shapes.map((s) => s.cell));
  const visible = (c: ColorName) => c !== scene.background;
  // Impossible proposals (nothing to name, no free cell) are InvalidEditErrors: the caller redraws.
  const pick = <T>(items: readonly T[], what: string): T => {
    if (items.length === 0) throw new InvalidEditError(`${category}: no ${what} to choose from.`);
    return rng.pick(items);
  };
  const empty = () =>
    pick(
      range(CELL_COUNT).filter((c) => !taken.has(c)),
      "empty cell",
    );
  switch (category) {
    case "add":
      return {
        op: "add",
        shape: {
          kind: rng.pick(SHAPE_KINDS),
          color: rng.pick(COLOR_NAMES.filter(visible)),
          cell: empty(),
          size: defaultShapeSize(scene.canvas),
        },
      };
    case "remove":
    case "extract":
      return { op: category, cell: pick(scene.shapes, "shape").cell };
    case "replace": {
      const shape = pick(scene.shapes, "shape");
      return { op: "replace", cell: shape.cell, kind: rng.pick(SHAPE_KINDS.filter((k) => k !== shape.kind)) };
    }
    case "adjust": {
      const shape = pick(scene.shapes, "shape");
      const color = rng.pick(COLOR_NAMES.filter((c) => visible(c) && c !== shape.color));
      return { op: "adjust", cell: shape.cell, color };
    }
    case "move":
      return { op: "move", cell: pick(scene.shapes, "shape").cell, to: empty() };
    case "background":
      return { op: "background", color: rng.pick(COLOR_NAMES.filter(visible)) };
  }
}

function proposeEdit(rng: Rng, scene: Scene, category: EditCategory): Edit {
  if (category !== "compose") return proposeSimple(rng, scene, category);
  const [a, b] = shuffled(rng, [...COMPOSABLE]);
  return { op: "compose", edits: [proposeSimple(rng, scene, a!), proposeSimple(rng, scene, b!)] };
}

function sameImage(a: RgbImage, b: RgbImage): boolean {
  return Buffer.compare(a.data, b.data) === 0;
}

/** A proposal that applies (valid target scene), or undefined after 64 failed proposals. */
function validEdit(
  rng: Rng,
  scene: Scene,
  category: EditCategory,
): { edit: Edit; target: Scene } | undefined {
  for (let attempt = 0; attempt < 64; attempt++) {
    try {
      const edit = proposeEdit(rng, scene, category);
      return { edit, target: applyEdit(scene, edit) };
    } catch (e) {
      if (!(e instanceof InvalidEditError)) throw e;
    }
  }
  return undefined;
}

/**
 * A random edit of `scene` in `category` whose target is valid and visibly different from the
 * source, or undefined when none is found (e.g. extract on a lone shape on white).
 */
export function randomEdit(
  rng: Rng,
  scene: Scene,
  category: EditCategory,
): { edit: Edit; target: Scene } | undefined {
  const source = renderScene(scene);
  for (let attempt = 0; attempt < 16; attempt++) {
    const made = validEdit(rng, scene, category);
    if (!made) return undefined;
    if (!sameImage(renderScene(made.target), source)) return made;
  }
  return undefined;
}

/** One out of HELDOUT_MODULUS canonical keys is reserved for the held-out split. */
export const HELDOUT_MODULUS = 10;

/**
 * Which split owns a canonical key. The key space is partitioned by a hash, so no seed of the
 * train split can ever produce a held-out (scene, instruction) pair, whatever the seeds.
 */
export function splitOfKey(key: string): Split {
  return fnv1a(key) % HELDOUT_MODULUS === 0 ? "heldout" : "train";
}

export interface GenerateEditsOptions {
  seed: number;
  count: number;
  split: Split;
  /** Canvas side in pixels (default 32). */
  size?: number;
  /** Categories to draw from, in round-robin order (default all EDIT_CATEGORIES). */
  categories?: readonly EditCategory[];
}

const SPLIT_SALT: Record<Split, number> = { train: 0x7472616e, heldout: 0x68656c64 };

/**
 * A deterministic data set of edits. Sample i depends only on (seed, split, i) and the samples
 * before it (duplicates are redrawn), so a shorter list is always a prefix of a longer one.
 * Categories rotate round-robin, so every category has an equal share.
 */
export function generateEdits(options: GenerateEditsOptions): ShapesEdit[] {
  const { seed, count, split } = options;
  const canvas = options.size ?? DEFAULT_CANVAS;
  const categories = options.categories ?? EDIT_CATEGORIES;
  if (!Number.isInteger(seed))
    throw new InvalidOptionsError(`generateEdits: seed must be an integer, got ${seed}.`);
  if (!Number.isInteger(count) || count < 0) {
    throw new InvalidOptionsError(`generateEdits: count must be a non-negative integer, got ${count}.`);
  }
  if (split !== "train" && split !== "heldout") {
    throw new InvalidOptionsError(
      `generateEdits: split must be "train" or "heldout", got ${JSON.stringify(split)}.`,
    );
  }
  if (!Number.isInteger(canvas) || canvas < MIN_CANVAS || canvas > MAX_CANVAS) {
    throw new InvalidOptionsError(
      `generateEdits: size must be an integer in [${MIN_CANVAS}, ${MAX_CANVAS}] pixels, got ${canvas}.`,
    );
  }
  if (
    categories.length === 0 ||
    categories.some((c) => !(EDIT_CATEGORIES as readonly string[]).includes(c))
  ) {
    throw new InvalidOptionsError(
      `generateEdits: categories must be a non-empty subset of ${EDIT_CATEGORIES.join(", ")}, got ${JSON.stringify(categories)}.`,
    );
  }
  const seen = new Set<string>();
  const out: ShapesEdit[] = [];
  for (let i = 0; i < count; i++) {
    const category = categories[i % categories.length]!;
    let sample: ShapesEdit | undefined;
    for (let attempt = 0; attempt < 10_000 && !sample; attempt++) {
      const rng = new Rng(mix32(seed, SPLIT_SALT[split], i, attempt));
      const scene = randomScene(rng, canvas);
      const made = validEdit(rng, scene, category);
      if (!made) continue;
      const key = canonicalKey(scene, made.edit);
      // The cheap checks first: most held-out draws fall in the train part of the key space.
      if (splitOfKey(key) !== split || seen.has(key)) continue;
      const source = renderScene(scene);
      const target = renderScene(made.target);
      if (sameImage(source, target)) continue;
      seen.add(key);
      sample = {
        key: `shapes-${split}-${seed}-${i}`,
        split,
        category,
        instruction: instructionFor(scene, made.edit),
        requirement: requirementFor(scene, made.edit),
        scene,
        edit: made.edit,
        targetScene: made.target,
        source,
        target,
        canonicalKey: key,
      };
    }
    if (!sample) {
      throw new ShapesError(
        `generateEdits: no new ${category} edit found for sample ${i} after 10000 draws; ` +
          "the requested count probably exceeds the distinct edits of this category and canvas.",
      );
    }
    out.push(sample);
  }
  return out;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function shuffled<T>(rng: Rng, items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** 32-bit FNV-1a of a string's UTF-16 code units (keys are ASCII). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Folds integers into one well-mixed 32-bit seed (murmur3's finaliser after each). */
function mix32(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h ^= v >>> 0;
    h ^= Math.floor(v / 2 ** 32) >>> 0; // keep seeds above 2^32 distinct
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}
