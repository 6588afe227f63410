import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EditDataset, EditDatasetError } from "./edit-dataset.js";
import { decodeImage, encodePng, ImageTooLargeError } from "./image-io.js";

/** A PNG of `width`×`height` (8-bit RGB) whose pixel data is 10 bytes: a valid header, no image behind it. */
function pngHeader(width: number, height: number): Uint8Array {
  const crc = (bytes: Uint8Array) => {
    let c = 0xffffffff;
    for (const byte of bytes) {
      c ^= byte;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    }
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Uint8Array) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "latin1");
    out.set(data, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(10))),
    chunk("IEND", new Uint8Array(0)),
  ]);
}

let dir = "";
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "edit-r1-data-"));
  mkdirSync(join(dir, "images"));
  const data = new Uint8Array(3 * 2 * 3);
  data.set([255, 0, 0], 0);
  writeFileSync(join(dir, "images", "red.png"), await encodePng({ width: 3, height: 2, data }));
  writeFileSync(join(dir, "images", "broken.png"), "not an image");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("EditDataset", () => {
  it("loads valid rows with images relative to the file and decodes on demand", async () => {
    const file = join(dir, "good.jsonl");
    writeFileSync(
      file,
      [
        JSON.stringify({ prompt: "make it blue", image: "images/red.png", requirement: "keep the shape" }),
        "",
        JSON.stringify({ prompt: "make it green", image: "images/red.png" }),
      ].join("\n"),
    );
    const ds = await EditDataset.load(file);
    expect(ds.size).toBe(2);
    const r = await ds.get(0);
    expect(r.instruction).toBe("make it blue");
    expect(r.requirement).toBe("keep the shape");
    expect(r.source.width).toBe(3);
    expect(Array.from(r.source.data.subarray(0, 3))).toEqual([255, 0, 0]);
    expect(ds.rows[1]!.line).toBe(3);
    expect((await ds.get(1)).requirement).toBeUndefined();
    expect(ds.groupKey(0)).not.toBe(ds.groupKey(1));
  });

  it("lists every bad line with its number and reason before any compute", async () => {
    const file = join(dir, "bad.jsonl");
    writeFileSync(
      file,
      [
        JSON.stringify({ prompt: "fine", image: "images/red.png" }),
        "{not json",
        JSON.stringify({ image: "images/red.png" }),
        JSON.stringify({ prompt: "  ", image: "images/red.png" }),
        JSON.stringify({ prompt: "where", image: "images/missing.png" }),
        JSON.stringify({ prompt: "broken", image: "images/broken.png" }),
        JSON.stringify({ prompt: "req", image: "images/red.png", requirement: 3 }),
        "[1, 2]",
      ].join("\n"),
    );
    const err = await EditDataset.load(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EditDatasetError);
    const issues = (err as EditDatasetError).issues;
    expect(issues.map((i) => i.line)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(issues[0]!.reason).toMatch(/malformed JSON/);
    expect(issues[1]!.reason).toMatch(/missing "prompt"/);
    expect(issues[2]!.reason).toMatch(/"prompt" is empty/);
    expect(issues[3]!.reason).toMatch(/images\/missing.png: file not found/);
    expect(issues[4]!.reason).toMatch(/images\/broken.png/);
    expect(issues[5]!.reason).toMatch(/requirement/);
    expect(issues[6]!.reason).toMatch(/not a JSON object/);
    expect((err as Error).message).toMatch(/7 bad lines/);
  });

  it("reports a missing file", async () => {
    await expect(EditDataset.load(join(dir, "nope.jsonl"))).rejects.toThrow(/cannot read the file/);
  });

  it("refuses a key given twice in one object, and two rows of one prompt and image, naming both lines", async () => {
    const file = join(dir, "dupes.jsonl");
    writeFileSync(
      file,
      [
        JSON.stringify({ prompt: "make it blue", image: "images/red.png" }),
        '{"prompt": "make it green", "image": "images/red.png", "prompt": "make it pink"}',
        JSON.stringify({ prompt: "make it teal", image: "images/red.png" }),
        JSON.stringify({ prompt: "make it blue", image: "./images/red.png", requirement: "x" }),
      ].join("\n"),
    );
    const err = await EditDataset.load(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EditDatasetError);
    const issues = (err as EditDatasetError).issues;
    expect(issues.map((i) => i.line)).toEqual([2, 4]);
    expect(issues[0]!.reason).toMatch(/key "prompt" appears more than once in the object/);
    expect(issues[1]!.reason).toMatch(/same prompt and image as line 1.*remove one of the two lines/);
    // Keys of nested values and string contents that look like keys are not top-level keys.
    writeFileSync(
      file,
      JSON.stringify({ prompt: 'say "prompt": x', image: "images/red.png", extra: { prompt: 1 } }),
    );
    expect((await EditDataset.load(file)).size).toBe(1);
  });

  it("says an empty file is empty, with no line 0", async () => {
    for (const text of ["", "\n  \n"]) {
      const file = join(dir, "empty.jsonl");
      writeFileSync(file, text);
      const err = await EditDataset.load(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EditDatasetError);
      expect((err as Error).message).toMatch(
        /empty\.jsonl: the file has no rows \((it is empty|only blank lines)\)/,
      );
      expect((err as Error).message).toMatch(/at least one edit/);
      expect((err as Error).message).not.toMatch(/line 0/);
    }
  });

  it("refuses an image too large to decode from its header, before decoding it", async () => {
    // A 10000×10000 header with 10 bytes of pixel data: decoding it would fail as truncated (after
    // allocating 300 MB), so a size message proves the header was read first.
    writeFileSync(join(dir, "images", "huge.png"), pngHeader(10000, 10000));
    await expect(decodeImage(join(dir, "images", "huge.png"))).rejects.toThrow(ImageTooLargeError);
    await expect(decodeImage(join(dir, "images", "huge.png"))).rejects.toThrow(
      /10000×10000 \(100\.0 megapixels\), more than the 89\.5 megapixels decoded; downscale it first/,
    );
    const file = join(dir, "huge.jsonl");
    writeFileSync(file, JSON.stringify({ prompt: "make it blue", image: "images/huge.png" }));
    for (const decodeAll of [true, false]) {
      const err = await EditDataset.load(file, { decodeAll }).catch((e: unknown) => e);
      expect((err as EditDatasetError).issues[0]!.reason).toMatch(
        /images\/huge\.png: the image is 10000×10000/,
      );
    }
  });
});
