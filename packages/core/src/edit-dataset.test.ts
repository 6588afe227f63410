import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EditDataset, EditDatasetError } from "./edit-dataset.js";
import { encodePng } from "./image-io.js";

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
});
