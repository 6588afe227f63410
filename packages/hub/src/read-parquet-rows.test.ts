import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataFileError } from "./data-file-error.js";
import { parquetRowCount, readParquetRows } from "./read-parquet-rows.js";

// Written by pyarrow (test-data/make-tiny-parquet.py), not by us, so these tests check real interop.
const TINY = fileURLToPath(new URL("../test-data/tiny.parquet", import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hub-parquet-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("readParquetRows", () => {
  it("reads every column type a Hub data set uses, keeping image bytes as bytes", async () => {
    const rows = await readParquetRows(TINY);
    expect(rows).toHaveLength(3);
    const [a, b, c] = rows as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(a).toMatchObject({
      key: "a1",
      task_type: "background_change",
      instruction: "Make the sky red",
      ok: true,
    });
    expect(b.instruction).toBe("把杯子变成蓝色");
    expect(c.task_type).toBeNull();
    expect(rows.map((r) => r.score)).toEqual([0.5, -1.25, 3]);
    expect(rows.map((r) => r.n)).toEqual([1n, 2n ** 40n, -3n]);
    const image = a.input_image as { bytes: Uint8Array; path: string };
    expect(image.bytes).toBeInstanceOf(Uint8Array);
    expect([...image.bytes]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]);
    expect(image.path).toBe("a.png");
    expect(b.input_image).toEqual({ bytes: new Uint8Array(0), path: null });
    expect(c.input_image).toBeNull();
    expect(rows.map((r) => r.tags)).toEqual([["x", "y"], [], null]);
  });

  it("reads gzip and brotli files like snappy ones, and zstd where Node has it", async () => {
    const reference = await readParquetRows(TINY);
    for (const codec of ["gzip", "brotli"]) {
      expect(await readParquetRows(TINY.replace("tiny.parquet", `tiny-${codec}.parquet`))).toEqual(reference);
    }
    const zstdFile = TINY.replace("tiny.parquet", "tiny-zstd.parquet");
    if ("zstdDecompressSync" in zlib) {
      expect(await readParquetRows(zstdFile)).toEqual(reference);
    } else {
      await expect(readParquetRows(zstdFile)).rejects.toThrow(/no zstd; use Node 22.15\+/);
    }
  });

  it("reads selected columns and a range of rows, and counts rows from the footer", async () => {
    expect(await parquetRowCount(TINY)).toBe(3);
    const rows = await readParquetRows(TINY, { columns: ["key", "score"], rowStart: 1, rowEnd: 3 });
    expect(rows).toEqual([
      { key: "b2", score: -1.25 },
      { key: "c3", score: 3 },
    ]);
  });

  it("turns missing, truncated and non-Parquet files into DataFileErrors naming them", async () => {
    const truncated = join(dir, "truncated.parquet");
    await writeFile(truncated, (await readFile(TINY)).subarray(0, 1000));
    const notParquet = join(dir, "x.parquet");
    await writeFile(notParquet, "key,score\na1,0.5\n");
    const copy = join(dir, "copy.parquet");
    await copyFile(TINY, copy);
    expect(await readParquetRows(copy)).toHaveLength(3);
    for (const path of [truncated, notParquet, join(dir, "absent.parquet")]) {
      const err = await readParquetRows(path).catch((e: unknown) => e);
      expect(err, path).toBeInstanceOf(DataFileError);
      expect((err as Error).message).toContain(path);
    }
    await expect(parquetRowCount(notParquet)).rejects.toBeInstanceOf(DataFileError);
  });
});
