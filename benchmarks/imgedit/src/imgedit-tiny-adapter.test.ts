/**
 * End to end with a real adapter: the embedded tiny model edits an ImgEdit-format suite made from
 * shapes-world edits (its vocabulary and 16×16 canvas), a scripted judge on loopback scores it and
 * fails some calls, and an interrupted run resumes without editing anything twice.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { TINY_IMAGE_SIZE, tinyAdapter } from "@edit-r1/adapter-tiny";
import type { Editor } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { createScriptedJudge, type JudgeServer, startJudgeServer } from "@edit-r1/rewards";
import { encodePng, generateEdits } from "@edit-r1/shapes";
import { afterAll, describe, expect, it } from "vitest";
import { createImgEditBenchmark } from "./imgedit-benchmark.js";

const servers: JudgeServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await closeDefaultRuntime();
});

// shapes categories → ImgEdit edit types ("move" is an action on an object).
const EDIT_TYPE: Record<string, string> = { move: "action" };

async function writeShapesSuite() {
  const dir = mkdtempSync(join(tmpdir(), "imgedit-tiny-"));
  const edits = generateEdits({ seed: 3, count: 8, split: "heldout", size: TINY_IMAGE_SIZE });
  const entries: Record<string, { id: string; prompt: string; edit_type: string }> = {};
  edits.forEach((e, i) => {
    const id = `${e.category}/${e.key}.png`;
    entries[String(100 + i)] = { id, prompt: e.instruction, edit_type: EDIT_TYPE[e.category] ?? e.category };
  });
  for (const [i, e] of edits.entries()) {
    const path = join(dir, entries[String(100 + i)]!.id);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, encodePng(e.source));
  }
  writeFileSync(join(dir, "basic_edit.json"), JSON.stringify(entries, null, 2));
  return { dir, entries, failing: edits[1]!.instruction };
}

function counting(editor: Editor): Editor & { edited: string[] } {
  const edited: string[] = [];
  return {
    name: editor.name,
    protocol: editor.protocol,
    edited,
    edit: async (requests) => {
      edited.push(...requests.map((r) => r.key));
      return editor.edit(requests);
    },
  };
}

describe("ImgEdit with the tiny adapter", () => {
  it("scores every item, reports judge failures per key and resumes an interrupted run", async () => {
    const { dir, entries, failing } = await writeShapesSuite();
    const judge = createScriptedJudge({
      id: "judge-t",
      respond: (req) =>
        req.text.includes(failing)
          ? { fault: "status", status: 500, message: "judge down for this item" }
          : { text: "Brief reasoning: scripted\nFirst: 4\nSecond: 3\nThird: 5" },
    });
    const server = await startJudgeServer({ models: [judge] });
    servers.push(server);
    const benchmark = createImgEditBenchmark({
      data: dir,
      judge: { url: server.url, model: "judge-t", retryBaseMs: 1, maxRetries: 1, env: {} },
    });
    const outDir = mkdtempSync(join(tmpdir(), "imgedit-tiny-out-"));
    const base = await tinyAdapter.loadEditor({ noiseSeed: 0 });
    try {
      const first = counting(base);
      await benchmark.run(first, { outDir, limit: 3 });
      expect(first.edited).toHaveLength(3);

      const second = counting(base);
      const report = await benchmark.run(second, { outDir });
      expect(second.edited).toHaveLength(Object.keys(entries).length - 3);
      expect(new Set([...first.edited, ...second.edited]).size).toBe(Object.keys(entries).length);

      // 4, 3, 5 with the 2nd and 3rd capped by the 1st → (4 + 3 + 4) / 3 per scored item.
      const scored = report.items.filter((i) => i.score !== undefined);
      expect(scored.length).toBe(Object.keys(entries).length - 1);
      for (const item of scored) expect(item.score).toBeCloseTo(11 / 3, 10);
      expect(report.excluded).toBe(1);
      expect(report.overall).toBeCloseTo(11 / 3, 10);
      for (const f of ["results.json", "results.md", "gallery.html"])
        expect(existsSync(join(outDir, f))).toBe(true);
      expect(readFileSync(join(outDir, "results.md"), "utf8")).toMatch(/exclu/i);
    } finally {
      await base.close?.();
    }
  });
});
