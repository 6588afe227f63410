import { describe, expect, it } from "vitest";
import { imageTokenIds } from "./kontext-velocity.js";

describe("imageTokenIds", () => {
  it("gives (index, row, column) row-major; the context image uses index 1 on its own grid", () => {
    expect(Array.from(imageTokenIds(4, 6, 0))).toEqual([
      0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2,
    ]);
    const ctx = imageTokenIds(2, 4, 1);
    expect(Array.from(ctx)).toEqual([1, 0, 0, 1, 0, 1]);
  });
});
