import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { benchmarkBatchSize, editThenJudge, exclusionsByKind, saveEdits } from "./edit-then-judge.js";
import { ItemJournal } from "./item-journal.js";
import type { Editor, EditRequest, RgbImage } from "./types.js";

interface Rec {
  key: string;
  score?: number;
  errorKind?: "generation" | "judge-reply";
}

const pixel: RgbImage = { width: 1, height: 1, data: new Uint8Array([1, 2, 3]) };
const request = (key: string): EditRequest => ({ key, instruction: key, source: pixel });

describe("editThenJudge", () => {
  it("skips final records, journals the rest in batches and reports progress", async () => {
    const dir = mkdtempSync(join(tmpdir(), "etj-"));
    const journal = await ItemJournal.open<Rec>(join(dir, "items.jsonl"));
    await journal.put({ key: "a", score: 1 });
    await journal.put({ key: "b", errorKind: "judge-reply" });
    const batches: string[][] = [];
    const progress: Array<[number, number]> = [];
    const records = await editThenJudge<string, string, Rec>({
      items: ["a", "b", "c", "d"],
      journal,
      keyOf: (k) => k,
      isFinal: (r) => r.score !== undefined,
      batchSize: 2,
      onProgress: (d, t) => progress.push([d, t]),
      generate: async (batch) => {
        batches.push([...batch]);
        return {
          generated: batch.filter((k) => k !== "d"),
          failed: batch.filter((k) => k === "d").map((key) => ({ key, errorKind: "generation" as const })),
        };
      },
      judge: async (key) => ({ key, score: key.charCodeAt(0) }),
    });
    expect(batches).toEqual([["b", "c"], ["d"]]);
    expect(records.map((r) => r.score)).toEqual([1, 98, 99, undefined]);
    expect(progress[0]).toEqual([1, 4]);
    expect(progress.at(-1)).toEqual([4, 4]);
    const reopened = await ItemJournal.open<Rec>(join(dir, "items.jsonl"));
    expect(reopened.get("d")).toEqual({ key: "d", errorKind: "generation" });
    expect(exclusionsByKind(records, (r) => r.score !== undefined, "judge-reply")).toEqual({
      generation: ["d"],
    });
  });

  it("refuses a batch size that is not a positive integer", () => {
    expect(benchmarkBatchSize({})).toBe(1);
    expect(() => benchmarkBatchSize({ batchSize: 0 })).toThrow(RangeError);
    expect(() => benchmarkBatchSize({ batchSize: 1.5 })).toThrow(/positive integer/);
  });
});

describe("saveEdits", () => {
  it("writes every output, and returns the whole batch as failed when the editor miscounts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "save-edits-"));
    const jobs = ["x", "y"].map((k) => ({ request: request(k), editedPath: join(dir, `${k}.png`) }));
    const good: Editor = { name: "good", protocol: {}, edit: async (rs) => rs.map(() => pixel) };
    expect((await saveEdits(good, jobs)).saved).toHaveLength(2);
    expect(existsSync(join(dir, "y.png"))).toBe(true);
    const short: Editor = { name: "short", protocol: {}, edit: async () => [pixel] };
    const { saved, failed } = await saveEdits(short, jobs);
    expect(saved).toEqual([]);
    expect(failed.map((f) => f.error)).toEqual([
      'editor "short" failed: returned 1 images for 2 requests',
      'editor "short" failed: returned 1 images for 2 requests',
    ]);
    const never: Editor = { name: "never", protocol: {}, edit: () => Promise.reject(new Error("called")) };
    expect(await saveEdits(never, [])).toEqual({ saved: [], failed: [] });
  });
});
