import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RunFileError } from "./errors.js";
import { ItemJournal } from "./item-journal.js";

interface Rec {
  key: string;
  n: number;
}

describe("ItemJournal", () => {
  it("persists every record, the last one per key winning, and reads them back", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "journal-")), "items.jsonl");
    const journal = await ItemJournal.open<Rec>(path);
    // A burst of concurrent puts: each resolves once its record is on disk.
    await Promise.all(Array.from({ length: 20 }, (_, i) => journal.put({ key: `k${i % 7}`, n: i })));
    const lines = readFileSync(path, "utf8").trim().split("\n");
    expect(lines).toHaveLength(7);
    const reopened = await ItemJournal.open<Rec>(path);
    for (let k = 0; k < 7; k++) {
      const last = Math.max(...Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 7 === k));
      expect(reopened.get(`k${k}`)).toEqual({ key: `k${k}`, n: last });
    }
    expect(reopened.get("k7")).toBeUndefined();
  });

  it("names the file and line of a damaged record instead of losing the journal silently", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "journal-")), "items.jsonl");
    writeFileSync(path, '{"key":"a","n":1}\n\n{"key":"b",\n');
    const err = await ItemJournal.open<Rec>(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunFileError);
    expect((err as RunFileError).line).toBe(3);
  });
});
