import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AtomicWriteError, writeFileAtomic } from "./atomic-write.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "atomic-write-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("writeFileAtomic", () => {
  it("writes strings, byte views and lists of parts, leaving no temporary file", async () => {
    await writeFileAtomic(join(dir, "a.json"), '{"ok":true}');
    expect(await readFile(join(dir, "a.json"), "utf8")).toBe('{"ok":true}');

    const floats = new Float32Array([1, 2, 3]);
    await writeFileAtomic(join(dir, "b.bin"), [new Uint8Array([9]), floats.subarray(1)]);
    const b = await readFile(join(dir, "b.bin"));
    expect([...b]).toEqual([9, ...new Uint8Array(floats.buffer, 4, 8)]);

    expect((await readdir(dir)).sort()).toEqual(["a.json", "b.bin"]);
  });

  it("replaces an existing file and creates missing folders", async () => {
    const path = join(dir, "deep", "er", "report.txt");
    await writeFileAtomic(path, "first");
    await writeFileAtomic(path, "second");
    expect(await readFile(path, "utf8")).toBe("second");
    expect(await readdir(join(dir, "deep", "er"))).toEqual(["report.txt"]);
  });

  it("fails with a typed error, keeps the old content and cleans up when the rename cannot happen", async () => {
    // A non-empty folder at the target path makes the final rename fail after the data was written.
    const target = join(dir, "ckpt");
    await mkdir(target);
    await writeFile(join(target, "keep.txt"), "old");
    const err = await writeFileAtomic(target, "new").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AtomicWriteError);
    expect((err as AtomicWriteError).path).toBe(target);
    expect((err as Error).message).toContain(target);
    expect(await readFile(join(target, "keep.txt"), "utf8")).toBe("old");
    expect(await readdir(dir)).toEqual(["ckpt"]);
  });

  it("refuses to create folders when asked not to", async () => {
    const err = await writeFileAtomic(join(dir, "missing", "x.txt"), "x", { makeDirs: false }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(AtomicWriteError);
    expect(await readdir(dir)).toEqual([]);
  });
});
