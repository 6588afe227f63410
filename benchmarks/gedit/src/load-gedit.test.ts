import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeImage } from "@edit-r1/core";
import { describe, expect, it } from "vitest";
import { GEditDataError, loadGEdit, readGEditImages } from "./load-gedit.js";
import { GEDIT_COMMIT, writeTinyGEditCache } from "./test-gedit-data.js";
import { ROWS } from "./test-gedit-rows.js";

describe("loadGEdit", () => {
  it("reads the parquet shards of the Hub cache snapshot, one language at a time", async () => {
    const cache = await writeTinyGEditCache(ROWS);
    const en = await loadGEdit({ hub: { cacheDir: cache } });
    expect(en.shards).toHaveLength(2);
    expect(en.shards[0]).toContain(join("snapshots", GEDIT_COMMIT, "data", "train-00000-of-00002.parquet"));
    expect(en.items.map((i) => i.instruction)).toEqual(
      ROWS.filter((r) => r.instruction_language === "en").map((r) => r.instruction),
    );
    expect(en.languages).toEqual({ en: 8, cn: 2 });
    expect(en.hasIntersectionColumn).toBe(true);
    const first = en.items[0]!;
    expect(first).toMatchObject({ key: ROWS[0]!.key, taskType: "background_change", intersection: true });
    expect(first.id).toBe(`background_change/${ROWS[0]!.key}`);
    expect(en.items[1]!.intersection).toBe(false);

    const cn = await loadGEdit({ hub: { cacheDir: cache }, language: "cn" });
    expect(cn.items.map((i) => i.instruction)).toEqual(["把背景换成海滩。", "把车变成红色。"]);
  });

  it("keeps an unknown task type as a problem naming the key", async () => {
    const cache = await writeTinyGEditCache(ROWS);
    const items = (await loadGEdit({ hub: { cacheDir: cache } })).items;
    const bad = items.find((i) => i.taskType === "teleport")!;
    expect(bad.problem).toMatch(new RegExp(`${bad.key}.*unknown task_type "teleport"`));
    expect(items.filter((i) => i.problem !== undefined)).toHaveLength(1);
  });

  it("reads an item's image structs back as the PNG bytes written", async () => {
    const cache = await writeTinyGEditCache(ROWS);
    const items = (await loadGEdit({ hub: { cacheDir: cache } })).items;
    const third = items[2]!; // in the first shard (rows 1–5)
    const images = await readGEditImages(third);
    const src = await decodeImage(images.inputImage!);
    const raw = await decodeImage(images.inputImageRaw!);
    expect([src.width, src.height, raw.width, raw.height]).toEqual([40, 24, 64, 40]);
    expect(src.data.subarray(0, 3)).toEqual(ROWS[2]!.input_image!.data.subarray(0, 3));
    const last = items.at(-1)!; // in the second shard, without image bytes
    expect(await readGEditImages(last)).toEqual({ inputImage: undefined, inputImageRaw: undefined });
  });

  it("explains what is wrong: not cached, no parquet (Arrow only), no rows in the language", async () => {
    const empty = mkdtempSync(join(tmpdir(), "gedit-none-"));
    await expect(loadGEdit({ hub: { cacheDir: empty } })).rejects.toThrow(
      /not found.*huggingface-cli download/s,
    );
    const arrowDir = mkdtempSync(join(tmpdir(), "gedit-arrow-"));
    mkdirSync(join(arrowDir, "train"));
    writeFileSync(join(arrowDir, "train", "data-00000-of-00001.arrow"), "");
    await expect(loadGEdit({ data: arrowDir })).rejects.toThrow(GEditDataError);
    await expect(loadGEdit({ data: arrowDir })).rejects.toThrow(/Arrow files/);
    const cache = await writeTinyGEditCache(
      ROWS.filter((r) => r.instruction_language === "en"),
      1,
    );
    await expect(loadGEdit({ hub: { cacheDir: cache }, language: "cn" })).rejects.toThrow(
      /languages found.*"en":8/,
    );
  });
});
