import { expect, it } from "vitest";
import { allclose, maxAbsDiff, relativeL2 } from "./allclose.js";
import { noise } from "./noise.js";

it("relativeL2 is ‖a − b‖ / ‖b‖, with the zero reference handled", () => {
  expect(relativeL2([3, 4], [0, 0])).toBe(Number.POSITIVE_INFINITY);
  expect(relativeL2([0, 0], [0, 0])).toBe(0);
  expect(relativeL2([1, 2], [1, 1])).toBeCloseTo(Math.SQRT1_2, 15);
  expect(() => relativeL2([1], [1, 2])).toThrow(/lengths? .*1 vs 2|differ in length \(1 vs 2\)/);
});

it("maxAbsDiff finds the largest difference and propagates NaN", () => {
  expect(maxAbsDiff([1, 2, 3], [1, 2.5, 2])).toBe(1);
  expect(maxAbsDiff([1, Number.NaN], [1, 2])).toBeNaN();
});

it("allclose passes within atol + rtol·|b| and reports the worst element by multi-index", () => {
  const ok = allclose([1, 2.001, -3], [1, 2, -3], { atol: 0, rtol: 1e-3 });
  expect(ok.ok).toBe(true);
  expect(ok.worst?.index).toBe(1);
  expect(ok.ratio).toBeCloseTo(0.5, 6);
  expect(ok.message).toMatch(
    /^all 3 elements within atol 0, rtol 1\.000e-3; worst at \[1\] uses (0\.5|0\.4999)/,
  );

  const bad = allclose([0, 1e-6, 0, 5], [0, 0, 0, 5], { atol: 1e-7, rtol: 1e-5, shape: [2, 2] });
  expect(bad.ok).toBe(false);
  expect(bad.failures).toBe(1);
  expect(bad.worst).toMatchObject({ index: 1, at: [0, 1], actual: 1e-6, expected: 0 });
  expect(bad.message).toMatch(
    /^1 of 4 elements .* worst at \[0, 1\]: got 1\.000e-6, expected 0, .*10\.00× the allowance/,
  );

  expect(allclose([Number.NaN], [1], { atol: 1, rtol: 1 }).ok).toBe(false);
  expect(allclose([1e-9], [0], { atol: 0, rtol: 0 }).ok).toBe(false);
  expect(() => allclose([1, 2], [1, 2], { atol: 0, rtol: 0, shape: [3] })).toThrow(/does not hold 2/);
});

it("noise is reproducible and bounded by its scale", () => {
  const a = noise(1000, 7, 0.5);
  expect(a).toEqual(noise(1000, 7, 0.5));
  expect(a).not.toEqual(noise(1000, 8, 0.5));
  expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(0.5);
  expect(noise(3, 1)).toEqual(
    Float32Array.from([-0.5270889401435852, -0.2614586651325226, 0.008484064601361752]),
  );
});
