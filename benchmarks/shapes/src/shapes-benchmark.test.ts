import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Editor, EditRequest } from "@edit-r1/core";
import { parseRequirement, renderScene } from "@edit-r1/shapes";
import { afterEach, describe, expect, it } from "vitest";
import { ShapesBenchmark } from "./shapes-benchmark.js";

/** An oracle that reads the target out of the requirement tag, and a do-nothing editor. */
function oracle(): Editor & { calls: number } {
  const e = {
    name: "oracle",
    protocol: { kind: "oracle" },
    calls: 0,
    async edit(requests: readonly EditRequest[]) {
      e.calls += requests.length;
      return requests.map((r) => renderScene(parseRequirement(r.requirement!).target));
    },
  };
  return e;
}
const identity: Editor = { name: "identity", protocol: {}, edit: async (rs) => rs.map((r) => r.source) };

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("ShapesBenchmark", () => {
  it("scores a perfect editor 1 and a do-nothing editor low, per category", async () => {
    const bench = new ShapesBenchmark({ count: 24 });
    const perfect = await bench.run(oracle());
    expect(perfect.overall).toBe(1);
    expect(perfect.excluded).toBe(0);
    const none = await bench.run(identity);
    expect(none.overall).toBeLessThan(0.1);
    expect(Object.keys(none.categories).length).toBeGreaterThanOrEqual(8);
    for (const c of Object.values(none.categories)) expect(c.count).toBe(3);
  });

  it("is held out and deterministic", () => {
    const a = new ShapesBenchmark({ count: 16 });
    const b = new ShapesBenchmark({ count: 16 });
    expect(a.items.map((i) => i.key)).toEqual(b.items.map((i) => i.key));
    expect(a.items.every((i) => i.split === "heldout")).toBe(true);
  });

  it("writes outputs and reports, and resumes without regenerating finished items", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-shapes-"));
    dirs.push(dir);
    const bench = new ShapesBenchmark({ count: 16 });
    const first = oracle();
    await bench.run(first, { outDir: dir, limit: 8 });
    expect(first.calls).toBe(8);
    const second = oracle();
    const report = await bench.run(second, { outDir: dir });
    expect(second.calls).toBe(8);
    expect(report.overall).toBe(1);
    const json = JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
    expect(json.items).toHaveLength(16);
    expect(readFileSync(join(dir, "results.md"), "utf8")).toMatch(/\| \*\*overall\*\* \| \*\*1\.000\*\*/);
    expect(statSync(join(dir, "gallery.html")).size).toBeGreaterThan(1000);
  });

  it("counts an item whose output has the wrong size as excluded, not as a score", async () => {
    const bad: Editor = {
      name: "bad",
      protocol: {},
      edit: async (rs) =>
        rs.map((r, i) => (i === 0 ? { width: 2, height: 2, data: new Uint8Array(12) } : r.source)),
    };
    const report = await new ShapesBenchmark({ count: 8 }).run(bad);
    expect(report.excluded).toBe(1);
    expect(report.items[0]!.error).toMatch(/size|match/i);
  });
});
