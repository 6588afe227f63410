import { PALETTE } from "./palette.js";
import type { RgbImage } from "./rgb-image.js";
import { type Scene, type Shape, shapeOrigin, validateScene } from "./scene.js";

/**
 * Whether the centre of pixel (px, py) lies inside a shape whose bounding box starts at (x0, y0)
 * with side s. Everything is doubled so the tests run in integers: no rounding, no anti-aliasing,
 * the same pixels on every machine.
 */
function covers(kind: Shape["kind"], s: number, dx2: number, dy2: number): boolean {
  // dx2, dy2: twice the offset of the pixel centre from the box's top-left corner, in (0, 2s).
  const cx = dx2 - s; // twice the offset from the box centre
  const cy = dy2 - s;
  switch (kind) {
    case "square":
      return true;
    case "circle":
      return cx * cx + cy * cy <= s * s;
    case "diamond":
      return Math.abs(cx) + Math.abs(cy) <= s;
    case "triangle":
      // Apex at the top centre, base along the bottom: half-width grows linearly with depth.
      return 2 * Math.abs(cx) <= dy2;
  }
}

/** Renders a scene to flat colours, deterministically; the scene is validated first. */
export function renderScene(scene: Scene): RgbImage {
  validateScene(scene);
  const n = scene.canvas;
  const data = new Uint8Array(n * n * 3);
  const bg = PALETTE[scene.background];
  for (let i = 0; i < n * n; i++) data.set(bg, i * 3);
  for (const shape of scene.shapes) {
    const { x: x0, y: y0 } = shapeOrigin(n, shape);
    const rgb = PALETTE[shape.color];
    const s = shape.size;
    for (let y = Math.max(0, y0); y < Math.min(n, y0 + s); y++) {
      for (let x = Math.max(0, x0); x < Math.min(n, x0 + s); x++) {
        if (covers(shape.kind, s, 2 * (x - x0) + 1, 2 * (y - y0) + 1)) data.set(rgb, (y * n + x) * 3);
      }
    }
  }
  return { width: n, height: n, data };
}
