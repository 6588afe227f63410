import { describe, expect, it } from "vitest";
import { area512Size, judgeJpegDataUrl, preprocessForJudge, resizeRgb } from "./gedit-preprocess.js";
import { solid } from "./test-gedit-data.js";

describe("GEdit judge preprocessing", () => {
  it.each([
    // int(sqrt(512*512*r)), int(w/r), evaluated with Python for these sizes.
    [1024, 768, 591, 443],
    [768, 1024, 443, 590],
    [64, 40, 647, 404],
    [48, 48, 512, 512],
  ])("area-512 size of %i×%i is %i×%i, as the official formula gives", (w, h, ew, eh) => {
    expect(area512Size(w, h)).toEqual({ width: ew, height: eh });
  });

  it("area-512 resizes source and edited independently; match-source forces the edit to the source size", async () => {
    const src = solid(64, 40, [10, 20, 30]);
    const edited = solid(48, 48, [200, 100, 0]);
    const a = await preprocessForJudge("area-512", src, edited);
    expect([a.source.width, a.source.height, a.edited.width, a.edited.height]).toEqual([647, 404, 512, 512]);
    const m = await preprocessForJudge("match-source", src, edited);
    expect(m.source).toBe(src);
    expect([m.edited.width, m.edited.height]).toEqual([64, 40]);
    expect(m.edited.data[0]).toBe(200);
  });

  it("resizeRgb keeps a same-size image and encodes JPEG data URLs", async () => {
    const img = solid(8, 8, [1, 2, 3]);
    expect(await resizeRgb(img, 8, 8)).toBe(img);
    expect(await judgeJpegDataUrl(img)).toMatch(/^data:image\/jpeg;base64,\/9j\//);
  });
});
