import { fixturesOfKind, type ModelFixture, readFixtureIo } from "@edit-r1/test-fixtures";
import { describe, expect, it } from "vitest";
import { type PilResampleFilter, type RgbImageU8, resamplePil } from "./pil-resample.js";

/**
 * The pipeline fixtures record the source image (`in.image{k}_u8`, uint8 HWC) and the uint8 image diffusers'
 * VaeImageProcessor made of it with PIL `Image.resize(..., LANCZOS)` (`out.vae_input{k}_u8`): our resize must
 * give the same bytes. Measured: max |difference| 0 on flux-kontext-pipeline (52×70 → 48×64, a downscale) and
 * qwenimage-edit-pipeline (50×75 → 64×128, an upscale). For scale: sharp 0.35.5's lanczos3 (fit "fill") on the
 * same images is off by up to 2 levels (mean 0.32, 32% of bytes differ) and 40 levels (mean 7.1, 96% differ;
 * its upscale samples elsewhere); PIL BICUBIC instead of LANCZOS by up to 6 and 8.
 */
const PIPELINE_KINDS = [
  "flux-kontext-pipeline",
  "qwenimage-edit-pipeline",
  "qwenimage-edit-plus-pipeline",
] as const;

const cases = PIPELINE_KINDS.flatMap((kind) =>
  fixturesOfKind(kind).map((f) => [`${kind}/${f.name}`, f] as const),
);

type Io = Awaited<ReturnType<typeof readFixtureIo>>;

/** A uint8 HWC tensor of the fixture (stored as uint8, read back as float32 by value) as an RGB image. */
function rgbImage(io: Io, name: string): RgbImageU8 {
  const t = io.get(name);
  if (!t) throw new Error(`missing ${name}`);
  const [height, width, channels] = t.shape;
  expect(t.shape.length, `${name} is HWC`).toBe(3);
  expect(channels, `${name} is RGB`).toBe(3);
  const data = Uint8Array.from(t.data);
  // The float32 copy must hold bytes exactly, or the comparison below would be meaningless.
  expect(
    Array.from(data).every((v, i) => v === t.data[i]),
    `${name} holds integers 0..255`,
  ).toBe(true);
  return { width: width!, height: height!, data };
}

/** The source/resized pairs of a fixture: each `in.image{k}_u8` with its `out.vae_input{k}_u8` (k may be empty). */
function resizePairs(io: Io): { source: string; resized: string }[] {
  const pairs: { source: string; resized: string }[] = [];
  for (const name of io.keys()) {
    const m = /^in\.image(\d*)_u8$/.exec(name);
    if (!m) continue;
    const resized = `out.vae_input${m[1]}_u8`;
    // Every source image reaches the VAE: a missing output is a malformed fixture, not one to skip.
    expect(io.has(resized), `${name} has no ${resized}`).toBe(true);
    pairs.push({ source: name, resized });
  }
  return pairs;
}

function maxAbsU8(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

it("finds at least one pipeline fixture with a resized source image", () => {
  expect(cases.length).toBeGreaterThan(0);
});

describe.each(cases)("PIL LANCZOS resize vs %s", (label, fixture: ModelFixture) => {
  it("reproduces every source image's resize bit for bit", async () => {
    const io = await readFixtureIo(fixture);
    const pairs = resizePairs(io);
    expect(pairs.length, `${fixture.dir}: no in.image{k}_u8 / out.vae_input{k}_u8 pair`).toBeGreaterThan(0);
    for (const { source, resized } of pairs) {
      const src = rgbImage(io, source);
      const ref = rgbImage(io, resized);
      // The fixtures' resizes all change the size; an unchanged one would test only the copy.
      expect(src.width !== ref.width || src.height !== ref.height).toBe(true);
      const ours = resamplePil(src, ref.width, ref.height, "lanczos");
      expect([ours.width, ours.height]).toEqual([ref.width, ref.height]);
      const diff = maxAbsU8(ours.data, ref.data);
      const bicubic = maxAbsU8(resamplePil(src, ref.width, ref.height, "bicubic").data, ref.data);
      console.log(
        `${label} ${source} ${src.height}×${src.width} → ${ref.height}×${ref.width}: max |ours − PIL| = ${diff}; ` +
          `bicubic instead: ${bicubic}`,
      );
      expect(diff).toBe(0);
      // Teeth: the other filter does not pass by accident.
      expect(bicubic).toBeGreaterThan(0);
    }
  });
});

/** A deterministic pseudo-random RGB image with hard edges (which is where the filters' lobes show). */
function testImage(width: number, height: number, seed = 1): RgbImageU8 {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24 > 127 ? 255 : s >>> 28;
  }
  return { width, height, data };
}

const FILTERS: PilResampleFilter[] = ["lanczos", "bicubic"];

describe.each(FILTERS)("resamplePil(%s) properties", (filter) => {
  it("keeps the size as a copy", () => {
    const img = testImage(13, 7);
    const out = resamplePil(img, 13, 7, filter);
    expect(out.data).toEqual(img.data);
    expect(out.data).not.toBe(img.data);
  });

  it.each([
    [40, 30, 17, 9],
    [17, 9, 40, 31],
    [5, 5, 1, 1],
    [64, 3, 3, 64],
  ])("keeps a constant image constant (%i×%i → %i×%i)", (w, h, ow, oh) => {
    for (const value of [0, 1, 77, 254, 255]) {
      const img = { width: w, height: h, data: new Uint8Array(w * h * 3).fill(value) };
      const out = resamplePil(img, ow, oh, filter);
      expect(out.data.length).toBe(ow * oh * 3);
      expect(out.data.every((v) => v === value)).toBe(true);
    }
  });

  it("is separable with a uint8 intermediate: width then height gives the same bytes", () => {
    // Pillow resamples horizontally (on the rows the vertical pass reads), rounds to uint8, then vertically.
    const img = testImage(23, 19, 7);
    for (const [ow, oh] of [
      [11, 8],
      [37, 41],
      [9, 30],
    ] as const) {
      const both = resamplePil(img, ow, oh, filter);
      const twoCalls = resamplePil(resamplePil(img, ow, img.height, filter), ow, oh, filter);
      expect(both.data).toEqual(twoCalls.data);
    }
  });

  /** A 1-row image: `lo` on the left half, `hi` on the right. */
  const step = (w: number, lo: number, hi: number): RgbImageU8 => {
    const data = new Uint8Array(w * 3).fill(lo);
    data.fill(hi, (w / 2) * 3);
    return { width: w, height: 1, data };
  };
  const red = (img: RgbImageU8) => Array.from({ length: img.width }, (_, x) => img.data[x * 3]!);

  it("rings on both sides of an edge (negative lobes)", () => {
    const out = red(resamplePil(step(8, 64, 192), 29, 1, filter));
    expect(Math.min(...out)).toBeLessThan(64);
    expect(Math.max(...out)).toBeGreaterThan(192);
  });

  it("clips the overshoot of a 0 → 255 edge instead of wrapping it", () => {
    // Unclipped, the ringing would go below 0 and above 255 and wrap around in a byte.
    const out = red(resamplePil(step(8, 0, 255), 29, 1, filter));
    // Wrapped, an undershoot on the dark side would read ~250 and an overshoot on the bright side ~5.
    expect(out.slice(0, 14).every((v) => v < 64)).toBe(true);
    expect(out.slice(15).every((v) => v > 192)).toBe(true);
    expect(out.filter((v) => v === 0).length).toBeGreaterThan(0);
    expect(out.filter((v) => v === 255).length).toBeGreaterThan(0);
  });

  it("rejects a data length that does not match the size", () => {
    expect(() => resamplePil({ width: 4, height: 4, data: new Uint8Array(47) }, 2, 2, filter)).toThrow(/48/);
  });
});
