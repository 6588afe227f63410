import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  fixturesOfKind,
  fixturesRoot,
  maxAbsDiff,
  readFixtureIo,
  readJsonFile,
  relativeL2,
  repositoryRoot,
} from "@edit-r1/test-fixtures";
import { describe, expect, it } from "vitest";
import { ModelConfigError } from "./model-config-error.js";
import { resamplePil } from "./pil-resample.js";
import {
  parseQwen2VLProcessorConfig,
  Qwen2VLProcessorError,
  qwen2VLPixelValues,
  qwen2VLResizeAndPatch,
  smartResize,
} from "./qwen2-vl-processor.js";

/** fixtures/README.md, "qwen2_5_vl-processor.json". */
interface ProcessorFixture {
  smart_resize: {
    height: number;
    width: number;
    factor: number;
    min_pixels: number;
    max_pixels: number;
    out?: [number, number];
    error?: string;
  }[];
  patches: {
    height: number;
    width: number;
    grid_thw: [number, number, number];
    row_patch_top_left_yx: [number, number][];
    row0_values: number[];
    row_last_values: number[];
  }[];
}

const FILE = "qwen2_5_vl-processor.json";
/** The folder in use when it has the file (a held-out folder may not), else the repository's own. */
const fixturePath = (): string => {
  const inUse = join(fixturesRoot(), FILE);
  return existsSync(inUse) ? inUse : join(repositoryRoot(), "fixtures", FILE);
};
const fixture = readJsonFile(fixturePath()) as ProcessorFixture;

/** The fixture's index image: pixel (y, x) = [y, x, 255 − (y + x) mod 256] as uint8. */
function indexImage(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = y & 255;
      data[i + 1] = x & 255;
      data[i + 2] = 255 - ((y + x) % 256);
    }
  }
  return { width, height, data };
}

const config = parseQwen2VLProcessorConfig({});

describe("parseQwen2VLProcessorConfig", () => {
  it("defaults to Qwen-Image's processor: 3136–12845056 pixels, 14-px patches, 2 frames, 2×2 merge, CLIP stats", () => {
    expect(config).toEqual({
      minPixels: 56 * 56,
      maxPixels: 16384 * 28 * 28,
      patchSize: 14,
      temporalPatchSize: 2,
      mergeSize: 2,
      doRescale: true,
      rescaleFactor: 1 / 255,
      doNormalize: true,
      imageMean: [0.48145466, 0.4578275, 0.40821073],
      imageStd: [0.26862954, 0.26130258, 0.27577711],
      resample: "bicubic",
    });
  });

  it("reads min/max_pixels or the newer size {shortest_edge, longest_edge}; min/max_pixels win", () => {
    expect(parseQwen2VLProcessorConfig({ min_pixels: 100, max_pixels: 5000 })).toMatchObject({
      minPixels: 100,
      maxPixels: 5000,
    });
    const sized = parseQwen2VLProcessorConfig({ size: { shortest_edge: 200, longest_edge: 9000 } });
    expect(sized).toMatchObject({ minPixels: 200, maxPixels: 9000 });
    const both = parseQwen2VLProcessorConfig({
      size: { shortest_edge: 200, longest_edge: 9000 },
      max_pixels: 7000,
    });
    expect(both).toMatchObject({ minPixels: 200, maxPixels: 7000 });
    expect(parseQwen2VLProcessorConfig({ resample: 1 }).resample).toBe("lanczos");
  });

  it("names the key of a bad value", () => {
    expect(() => parseQwen2VLProcessorConfig({ size: { shortest_edge: 3 } })).toThrow(/"size"/);
    expect(() => parseQwen2VLProcessorConfig({ patch_size: 0 })).toThrow(/"patch_size"/);
    expect(() => parseQwen2VLProcessorConfig({ image_std: [1, 0, 1] })).toThrow(/"image_std"/);
    expect(() => parseQwen2VLProcessorConfig({ image_mean: [1, 2] })).toThrow(ModelConfigError);
    expect(() => parseQwen2VLProcessorConfig({ resample: 2 })).toThrow(/"resample"/);
    expect(() => parseQwen2VLProcessorConfig({ min_pixels: 10, max_pixels: 5 })).toThrow(/min_pixels/);
  });
});

describe("smartResize (fixture cases)", () => {
  it("has cases, some of them errors", () => {
    expect(fixture.smart_resize.length).toBeGreaterThan(0);
    expect(fixture.smart_resize.some((c) => c.error !== undefined)).toBe(true);
  });

  for (const c of fixture.smart_resize) {
    const opts = { factor: c.factor, minPixels: c.min_pixels, maxPixels: c.max_pixels };
    it(`${c.height}×${c.width} (factor ${c.factor}, ${c.min_pixels}–${c.max_pixels} px) → ${c.out ?? "error"}`, () => {
      if (c.error !== undefined) {
        expect(() => smartResize(c.height, c.width, opts)).toThrow(Qwen2VLProcessorError);
        // The reference's message, then the size: e.g. "… smaller than 200, got 250.0 (image 2500×10 …".
        expect(() => smartResize(c.height, c.width, opts)).toThrow(c.error);
        expect(() => smartResize(c.height, c.width, opts)).toThrow(`${c.width}×${c.height}`);
      } else {
        const out = smartResize(c.height, c.width, opts);
        expect([out.height, out.width]).toEqual(c.out);
      }
    });
  }

  it("rounds sides of 28k + 14 half to even, unlike Math.round", () => {
    const opts = { minPixels: 1, maxPixels: 1e9 };
    expect(smartResize(42, 70, opts)).toEqual({ height: 56, width: 56 }); // 1.5 → 2, 2.5 → 2
    expect(smartResize(98, 126, opts)).toEqual({ height: 112, width: 112 }); // 3.5 → 4, 4.5 → 4
  });

  it("rejects non-positive or fractional sides", () => {
    expect(() => smartResize(0, 100, { minPixels: 1, maxPixels: 1e6 })).toThrow(/height/);
    expect(() => smartResize(100, 10.5, { minPixels: 1, maxPixels: 1e6 })).toThrow(/width/);
  });
});

describe("qwen2VLPixelValues (fixture patches)", () => {
  it("has cases", () => {
    expect(fixture.patches.length).toBeGreaterThan(0);
  });

  for (const [k, c] of fixture.patches.entries()) {
    it(`patches[${k}]: ${c.width}×${c.height} index image`, () => {
      const image = indexImage(c.width, c.height);
      const { pixelValues, grid } = qwen2VLPixelValues(image, config);
      expect(grid).toEqual(c.grid_thw);
      const [t, gh, gw] = grid;
      const p = config.patchSize;
      const frames = config.temporalPatchSize;
      const rowLength = 3 * frames * p * p;
      const rows = t * gh * gw;
      expect(pixelValues.length).toBe(rows * rowLength);
      expect(c.row_patch_top_left_yx.length).toBe(rows);
      expect(c.row0_values.length).toBe(rowLength);

      // Layout: undo the normalisation of every value and find the pixel it came from, column
      // ((c·frames + t)·p + py)·p + px of a row = channel c of pixel (y0 + py, x0 + px) of its patch.
      let misplaced = 0;
      for (let r = 0; r < rows; r++) {
        const [y0, x0] = c.row_patch_top_left_yx[r]!;
        for (let ch = 0; ch < 3; ch++) {
          for (let f = 0; f < frames; f++) {
            for (let py = 0; py < p; py++) {
              for (let px = 0; px < p; px++) {
                const v = pixelValues[r * rowLength + ((ch * frames + f) * p + py) * p + px]!;
                const level = Math.round((v * config.imageStd[ch]! + config.imageMean[ch]!) * 255);
                const expected = image.data[((y0 + py) * c.width + x0 + px) * 3 + ch]!;
                if (level !== expected) misplaced++;
              }
            }
          }
        }
      }
      expect(misplaced).toBe(0);

      // Values: the float32 arithmetic of the numpy processor.
      const first = pixelValues.subarray(0, rowLength);
      const last = pixelValues.subarray((rows - 1) * rowLength);
      expect(maxAbsDiff(first, c.row0_values)).toBeLessThanOrEqual(1e-7);
      expect(maxAbsDiff(last, c.row_last_values)).toBeLessThanOrEqual(1e-7);
      const exact = [...first, ...last].filter(
        (v, i) => v === (i < rowLength ? c.row0_values[i] : c.row_last_values[i - rowLength]),
      ).length;
      expect(exact).toBe(2 * rowLength);
    });
  }

  it("refuses an image whose sides are not multiples of patch·merge, and wrong data lengths", () => {
    expect(() => qwen2VLPixelValues(indexImage(56, 42), config)).toThrow(/multiples of .* 28/);
    expect(() => qwen2VLPixelValues({ width: 28, height: 28, data: new Uint8Array(10) }, config)).toThrow(
      /RGB, HWC/,
    );
  });
});

describe("qwen2VLPixelValues on the Qwen2.5-VL encoder fixtures' images", () => {
  const fixtures = fixturesOfKind("qwen2_5_vl-encoder");
  it("has fixtures", () => {
    expect(fixtures.length).toBeGreaterThan(0);
  });
  for (const fx of fixtures) {
    it(`${fx.name}: in.image{k}_u8 → in.pixel_values, in.image_grid_thw`, async () => {
      const io = await readFixtureIo(fx);
      // The processor's patch geometry is the vision tower's (config.json vision_config).
      const vision = (fx.meta.config.vision_config ?? {}) as Record<string, unknown>;
      const fxConfig = parseQwen2VLProcessorConfig({
        patch_size: vision.patch_size,
        temporal_patch_size: vision.temporal_patch_size,
        merge_size: vision.spatial_merge_size,
      });
      const grids: number[] = [];
      const parts: Float32Array[] = [];
      for (let k = 0; io.has(`in.image${k}_u8`); k++) {
        const { shape, data } = io.get(`in.image${k}_u8`)!;
        const [height, width, channels] = shape;
        expect(channels).toBe(3);
        const image = { width: width!, height: height!, data: Uint8Array.from(data) };
        const out = qwen2VLPixelValues(image, fxConfig);
        grids.push(...out.grid);
        parts.push(out.pixelValues);
      }
      expect(parts.length).toBeGreaterThan(0);
      const grid = io.get("in.image_grid_thw")!;
      expect(grid.shape).toEqual([parts.length, 3]);
      expect(grids).toEqual([...grid.data]);

      const ref = io.get("in.pixel_values")!;
      const ours = new Float32Array(parts.reduce((n, a) => n + a.length, 0));
      let at = 0;
      for (const a of parts) {
        ours.set(a, at);
        at += a.length;
      }
      expect(ref.shape).toEqual([ours.length / ref.shape[1]!, ref.shape[1]]);
      expect(relativeL2(ours, ref.data)).toBeLessThan(1e-6);
      expect(maxAbsDiff(ours, ref.data)).toBeLessThanOrEqual(2.5e-7);
    });
  }
});

describe("qwen2VLResizeAndPatch", () => {
  it("patches an image already at its smart_resize size as it is", () => {
    const image = indexImage(84, 56);
    const direct = qwen2VLPixelValues(image, config);
    const both = qwen2VLResizeAndPatch(image, config);
    expect(both.grid).toEqual(direct.grid);
    expect(maxAbsDiff(both.pixelValues, direct.pixelValues)).toBe(0);
  });

  it("resizes to the smart_resize size with Pillow BICUBIC first", () => {
    const image = indexImage(101, 67);
    const small = { ...config, maxPixels: 4000 };
    const size = smartResize(67, 101, { factor: 28, minPixels: small.minPixels, maxPixels: 4000 });
    const out = qwen2VLResizeAndPatch(image, small);
    expect(out.grid).toEqual([1, size.height / 14, size.width / 14]);
    const expected = qwen2VLPixelValues(resamplePil(image, size.width, size.height, "bicubic"), small);
    expect(maxAbsDiff(out.pixelValues, expected.pixelValues)).toBe(0);
    // LANCZOS (resample 1) gives other pixels.
    const lanczos = qwen2VLResizeAndPatch(image, { ...small, resample: "lanczos" });
    expect(maxAbsDiff(lanczos.pixelValues, expected.pixelValues)).toBeGreaterThan(0);
  });
});
