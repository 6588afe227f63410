import { describe, expect, it } from "vitest";
import { PALETTE } from "./palette.js";
import { renderScene } from "./render-scene.js";
import { type Scene, SHAPE_KINDS, type ShapeKind, shapeOrigin } from "./scene.js";

function lone(kind: ShapeKind, size: number, canvas = 32): Scene {
  return { canvas, background: "black", shapes: [{ kind, color: "yellow", cell: 4, size }] };
}

/** Set of pixel indices painted in the shape's colour. */
function mask(scene: Scene): boolean[] {
  const img = renderScene(scene);
  const [r, g, b] = PALETTE.yellow;
  const out: boolean[] = [];
  for (let i = 0; i < img.width * img.height; i++) {
    out.push(img.data[3 * i] === r && img.data[3 * i + 1] === g && img.data[3 * i + 2] === b);
  }
  return out;
}

describe("renderScene", () => {
  it("is deterministic and uses only palette colours", () => {
    const scene: Scene = {
      canvas: 32,
      background: "green",
      shapes: [
        { kind: "triangle", color: "red", cell: 1, size: 9 },
        { kind: "diamond", color: "white", cell: 6, size: 10 },
      ],
    };
    const a = renderScene(scene);
    const b = renderScene(scene);
    expect(a.width).toBe(32);
    expect(a.height).toBe(32);
    expect(a.data.length).toBe(32 * 32 * 3);
    expect(Buffer.compare(a.data, b.data)).toBe(0);
    const allowed = new Set([PALETTE.green, PALETTE.red, PALETTE.white].map((c) => c.join()));
    for (let i = 0; i < a.data.length; i += 3)
      expect(allowed.has(Array.from(a.data.slice(i, i + 3)).join())).toBe(true);
  });

  it("paints only inside each shape's bounding box", () => {
    for (const kind of SHAPE_KINDS) {
      const scene = lone(kind, 9);
      const { x, y } = shapeOrigin(32, scene.shapes[0]!);
      mask(scene).forEach((on, i) => {
        const px = i % 32;
        const py = Math.floor(i / 32);
        if (on) {
          expect(px >= x && px < x + 9 && py >= y && py < y + 9).toBe(true);
        }
      });
    }
  });

  it("gives each kind its expected area and a different outline", () => {
    const s = 10;
    const area = (kind: ShapeKind) => mask(lone(kind, s)).filter(Boolean).length;
    expect(area("square")).toBe(s * s);
    // Pixel-centre sampling can only err on pixels the outline crosses: at most about half the perimeter.
    expect(Math.abs(area("circle") - (Math.PI * s * s) / 4)).toBeLessThanOrEqual((Math.PI * s) / 2);
    expect(Math.abs(area("diamond") - (s * s) / 2)).toBeLessThanOrEqual(Math.SQRT2 * s);
    expect(Math.abs(area("triangle") - (s * s) / 2)).toBeLessThanOrEqual(((1 + Math.sqrt(5)) * s) / 2);
    const masks = SHAPE_KINDS.map((k) => mask(lone(k, s)).join());
    expect(new Set(masks).size).toBe(SHAPE_KINDS.length);
  });

  it("draws triangles pointing up: narrow at the top row, widest at the bottom row", () => {
    const scene = lone("triangle", 10);
    const { y } = shapeOrigin(32, scene.shapes[0]!);
    const m = mask(scene);
    const rowWidth = (row: number) => m.slice(row * 32, row * 32 + 32).filter(Boolean).length;
    expect(rowWidth(y)).toBeLessThan(rowWidth(y + 9));
    expect(rowWidth(y + 9)).toBe(10);
  });

  it("keeps circles and diamonds symmetric", () => {
    for (const kind of ["circle", "diamond"] as const) {
      const m = mask(lone(kind, 9));
      for (let i = 0; i < m.length; i++) {
        const x = i % 32;
        const y = Math.floor(i / 32);
        const { x: x0, y: y0 } = shapeOrigin(32, { cell: 4, size: 9 });
        const mx = 2 * x0 + 8 - x; // mirror across the box centre
        const my = 2 * y0 + 8 - y;
        if (m[i]) {
          expect(m[y * 32 + mx]).toBe(true);
          expect(m[my * 32 + x]).toBe(true);
        }
      }
    }
  });
});
