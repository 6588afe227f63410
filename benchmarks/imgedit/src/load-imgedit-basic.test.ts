import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedReferenceDataDir } from "@edit-r1/test-fixtures";
import { describe, expect, it } from "vitest";
import { ImgEditDataError, loadImgEditBasic } from "./load-imgedit-basic.js";
import { TINY_ENTRIES, writeTinyImgEdit } from "./test-imgedit-data.js";

/** The published file, kept in the shared reference data beside the repository (../shared/reference/data). */
const REFERENCE_DIR = sharedReferenceDataDir();
const REFERENCE = process.env.EDIT_R1_IMGEDIT_JSON ?? join(REFERENCE_DIR, "imgedit-basic_edit.json");

describe("loadImgEditBasic", () => {
  it("reads a local folder: keys, instructions, edit types and image paths in key order", async () => {
    const { dir } = await writeTinyImgEdit();
    const data = await loadImgEditBasic({ data: dir });
    expect(data.items.map((i) => i.key)).toEqual(Object.keys(TINY_ENTRIES));
    const adjust = data.items.find((i) => i.key === "101")!;
    expect(adjust).toMatchObject({
      category: "adjust",
      instruction: TINY_ENTRIES["101"]!.prompt,
      imageId: "daily object/000002.jpg",
      imagePath: join(dir, "daily object/000002.jpg"),
    });
    expect(existsSync(adjust.imagePath)).toBe(true);
    expect(data.items.every((i) => i.problem === undefined)).toBe(true);
    expect(data.jsonSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("finds the suite in a Hugging Face dataset cache snapshot", async () => {
    const cache = mkdtempSync(join(tmpdir(), "imgedit-cache-"));
    const repo = join(cache, "datasets--sysuyy--ImgEdit");
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const snapshot = join(repo, "snapshots", commit);
    mkdirSync(join(repo, "refs"), { recursive: true });
    writeFileSync(join(repo, "refs", "main"), commit);
    await writeTinyImgEdit({ dir: join(snapshot, "Benchmark", "singleturn") });
    // The snapshot keeps the JSON as singleturn.json next to the images.
    const { renameSync } = await import("node:fs");
    renameSync(
      join(snapshot, "Benchmark/singleturn/basic_edit.json"),
      join(snapshot, "Benchmark/singleturn/singleturn.json"),
    );
    const data = await loadImgEditBasic({ hub: { cacheDir: cache } });
    expect(data.jsonPath).toBe(join(snapshot, "Benchmark/singleturn/singleturn.json"));
    expect(data.items).toHaveLength(Object.keys(TINY_ENTRIES).length);
    expect(existsSync(data.items[0]!.imagePath)).toBe(true);
  });

  it("keeps bad entries with a problem that names the key: old 'alter', unknown type, missing fields", async () => {
    const dir = mkdtempSync(join(tmpdir(), "imgedit-bad-"));
    writeFileSync(
      join(dir, "basic_edit.json"),
      JSON.stringify({
        "1": { id: "a.jpg", prompt: "make it red", edit_type: "alter" },
        "2": { id: "b.jpg", prompt: "do it", edit_type: "teleport" },
        "3": { prompt: "no image", edit_type: "add" },
        "4": { id: "c.jpg", prompt: "fine", edit_type: "add" },
      }),
    );
    const items = (await loadImgEditBasic({ data: dir })).items;
    expect(items[0]!.problem).toMatch(/"1".*"alter".*"adjust"/);
    expect(items[1]!.problem).toMatch(/"2".*unknown edit_type "teleport"/);
    expect(items[2]!.problem).toMatch(/"3".*"id"/);
    expect(items[3]!.problem).toBeUndefined();
  });

  it("says how to get the data when the folder has no JSON, mentioning an unextracted Benchmark.tar", async () => {
    const dir = mkdtempSync(join(tmpdir(), "imgedit-empty-"));
    writeFileSync(join(dir, "Benchmark.tar"), "");
    await expect(loadImgEditBasic({ data: dir })).rejects.toThrow(ImgEditDataError);
    await expect(loadImgEditBasic({ data: dir })).rejects.toThrow(/Benchmark\.tar.*extract/);
    await expect(
      loadImgEditBasic({ data: "sysuyy/ImgEdit", hub: { cacheDir: join(dir, "no-cache") } }),
    ).rejects.toThrow(/not found.*basic_edit\.json/s);
  });

  it("rejects a JSON that is not an object keyed by id", async () => {
    const dir = mkdtempSync(join(tmpdir(), "imgedit-array-"));
    writeFileSync(join(dir, "basic_edit.json"), "[1, 2]");
    await expect(loadImgEditBasic({ data: dir })).rejects.toThrow(/keyed by sample id/);
  });

  it("reads the published basic_edit.json: 737 entries in 9 known types", async (ctx) => {
    // Only a missing shared folder skips; a folder without the file fails, naming the path.
    ctx.skip(
      process.env.EDIT_R1_IMGEDIT_JSON === undefined && !existsSync(REFERENCE_DIR),
      `no shared reference data at ${REFERENCE_DIR} (the repository's ../shared/reference/data); ` +
        "set EDIT_R1_IMGEDIT_JSON to the published basic_edit.json to run this check",
    );
    expect(existsSync(REFERENCE), `${REFERENCE} is missing`).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "imgedit-ref-"));
    const data = await loadImgEditBasic({ data: dir, editJson: REFERENCE });
    expect(data.items).toHaveLength(737);
    expect(data.items.filter((i) => i.problem !== undefined)).toEqual([]);
    const counts: Record<string, number> = {};
    for (const i of data.items) counts[i.category] = (counts[i.category] ?? 0) + 1;
    // The counts of benchmarks.md §1.3, counted there from the same file.
    expect(counts).toEqual({
      add: 95,
      adjust: 94,
      extract: 117,
      replace: 92,
      remove: 86,
      background: 94,
      style: 100,
      compose: 23,
      action: 36,
    });
  });
});
