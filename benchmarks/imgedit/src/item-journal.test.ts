import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ItemJournal } from "./item-journal.js";
import { claimOutDir, ResumeMismatchError } from "./run-identity.js";

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
});

describe("claimOutDir", () => {
  it("accepts the same identity (in any key order) and refuses a different one, naming the fields", async () => {
    const dir = mkdtempSync(join(tmpdir(), "identity-"));
    await claimOutDir(dir, { editor: "a", generation: { steps: 28, seed: 0 }, judgeModel: "gpt-4.1" });
    await claimOutDir(dir, { judgeModel: "gpt-4.1", generation: { seed: 0, steps: 28 }, editor: "a" });
    const err = await claimOutDir(dir, {
      editor: "a",
      generation: { steps: 8, seed: 0 },
      judgeModel: "gpt-4o",
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResumeMismatchError);
    expect((err as ResumeMismatchError).fields).toEqual(["generation", "judgeModel"]);
  });
});
