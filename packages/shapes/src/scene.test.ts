import { describe, expect, it } from "vitest";
import { InvalidSceneError } from "./errors.js";
import { CELL_COUNT, type Scene, shapeOrigin, shapeSizeRange, validateScene } from "./scene.js";

const ok: Scene = {
  canvas: 32,
  background: "white",
  shapes: [
    { kind: "circle", color: "red", cell: 0, size: 10 },
    { kind: "square", color: "blue", cell: 4, size: 8 },
  ],
};

describe("scene geometry", () => {
  it("keeps shapes at 32×32 between 8 and 10 pixels", () => {
    expect(shapeSizeRange(32)).toEqual({ min: 8, max: 10 });
  });
  it("never lets shapes in different cells overlap or leave the canvas, for every canvas and size", () => {
    const problems: string[] = [];
    for (let canvas = 16; canvas <= 160; canvas++) {
      const { min, max } = shapeSizeRange(canvas);
      if (min > max) problems.push(`canvas ${canvas}: empty size range`);
      for (let a = min; a <= max; a++) {
        for (let col = 0; col < 3; col++) {
          const p = shapeOrigin(canvas, { cell: col, size: a });
          if (p.x < 0 || p.x + a > canvas) problems.push(`canvas ${canvas} size ${a} col ${col}: off canvas`);
          for (let b = min; b <= max && col < 2; b++) {
            // box [x, x + size) must end before the next cell's box begins
            if (p.x + a > shapeOrigin(canvas, { cell: col + 1, size: b }).x) {
              problems.push(`canvas ${canvas} sizes ${a}/${b} col ${col}: overlap`);
            }
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });
  it("uses the same offsets for rows as for columns", () => {
    for (let cell = 0; cell < CELL_COUNT; cell++) {
      const p = shapeOrigin(32, { cell, size: 9 });
      expect(p.y).toBe(shapeOrigin(32, { cell: Math.floor(cell / 3), size: 9 }).x);
    }
  });
});

describe("validateScene", () => {
  it("accepts a well-formed scene", () => {
    expect(() => validateScene(ok)).not.toThrow();
  });
  const bad: [string, Scene][] = [
    ["canvas too small", { ...ok, canvas: 8 }],
    ["unknown background", { ...ok, background: "pink" as never }],
    ["unknown kind", { ...ok, shapes: [{ ...ok.shapes[0]!, kind: "star" as never }] }],
    ["unknown colour", { ...ok, shapes: [{ ...ok.shapes[0]!, color: "teal" as never }] }],
    ["cell out of grid", { ...ok, shapes: [{ ...ok.shapes[0]!, cell: 9 }] }],
    ["size too large", { ...ok, shapes: [{ ...ok.shapes[0]!, size: 11 }] }],
    ["size too small", { ...ok, shapes: [{ ...ok.shapes[0]!, size: 7 }] }],
    ["unsorted cells", { ...ok, shapes: [ok.shapes[1]!, ok.shapes[0]!] }],
    ["same cell twice", { ...ok, shapes: [ok.shapes[0]!, { ...ok.shapes[1]!, cell: 0 }] }],
    ["invisible shape", { ...ok, shapes: [{ ...ok.shapes[0]!, color: "white" }] }],
    ["ambiguous names", { ...ok, shapes: [ok.shapes[0]!, { ...ok.shapes[0]!, cell: 8, size: 9 }] }],
  ];
  it.each(bad)("rejects %s", (_, scene) => {
    expect(() => validateScene(scene)).toThrow(InvalidSceneError);
  });
});
