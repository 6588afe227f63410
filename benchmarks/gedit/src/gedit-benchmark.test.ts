import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Editor, EditRequest } from "@edit-r1/core";
import {
  createScriptedJudge,
  type JudgeModelReply,
  type JudgeModelRequest,
  type JudgeServer,
  startJudgeServer,
} from "@edit-r1/rewards";
import { afterEach, describe, expect, it } from "vitest";
import { createGEditBenchmark, type GEditItemRecord } from "./gedit-benchmark.js";
import { solid, writeTinyGEditCache } from "./test-gedit-data.js";
import { indexOfInstruction, ROWS } from "./test-gedit-rows.js";

const servers: JudgeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Edits every source into a solid 48×48 image whose red channel encodes the item (20 · index). */
function codingEditor(protocol: Record<string, unknown> = { steps: 28, guidance: 2.5, seed: 42 }) {
  const seen: string[] = [];
  const editor: Editor & { seen: string[] } = {
    name: "test-coding",
    protocol,
    seen,
    async edit(requests: readonly EditRequest[]) {
      return requests.map((r) => {
        seen.push(r.instruction);
        return solid(48, 48, [20 * indexOfInstruction.get(r.instruction)!, 0, 0]);
      });
    },
  };
  return editor;
}

const json = (a: number, b: number) => ({ text: `{"score": [${a}, ${b}], "reasoning": "scripted"}` });

/** SC replies by item index (instruction in the text); PQ replies by the index coded in the image. */
function script(state: { healthy: boolean; calls: string[] }) {
  return (req: JudgeModelRequest): JudgeModelReply => {
    const instruction = /^Editing instruction: (.*)$/m.exec(req.text)?.[1];
    if (instruction !== undefined) {
      const i = indexOfInstruction.get(instruction)!;
      state.calls.push(`sc${i}`);
      const n = state.calls.filter((c) => c === `sc${i}`).length;
      if (i === 1) return json(8, 6);
      if (i === 2) return json(4, 9);
      if (i === 3) return json(10, 10);
      if (i === 4) return { text: "The edit looks good overall." }; // never parses
      if (i === 5) return n === 1 ? { fault: "status", status: 503 } : json(6, 6); // retried by the client
      if (i === 6) return json(7, 7);
      if (i === 9) return json(9, 8);
      if (i === 10) return json(3, 5);
      return { fault: "status", status: 500, message: `unexpected item ${i}` };
    }
    const i = Math.round(req.images[0]!.data[0]! / 20);
    state.calls.push(`pq${i}`);
    if (i === 1) return json(7, 9);
    if (i === 2) return json(8, 8);
    if (i === 3) return json(5, 6);
    if (i === 4) return json(9, 9);
    if (i === 5) return { text: '```json\n{score: [9, 7], reasoning: "fine"}\n```' }; // bare keys, repaired
    if (i === 6) return state.healthy ? json(6, 8) : { fault: "status", status: 400, message: "flagged" };
    if (i === 9) return json(6, 10);
    if (i === 10) return json(4, 4);
    return { fault: "status", status: 500, message: `unexpected image ${i}` };
  };
}

async function setup() {
  const cache = await writeTinyGEditCache(ROWS);
  const state = { healthy: false, calls: [] as string[] };
  const respond = script(state);
  const judge = createScriptedJudge({ id: "judge-v", respond: (req) => respond(req) });
  const server = await startJudgeServer({ models: [judge] });
  servers.push(server);
  const make = (extra: Parameters<typeof createGEditBenchmark>[0] = {}) =>
    createGEditBenchmark({
      hub: { cacheDir: cache },
      judge: { url: server.url, model: "judge-v", retryBaseMs: 1, maxRetries: 2, env: {} },
      ...extra,
    });
  return { cache, state, judge, make };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const key = (i: number) => `${ROWS[i - 1]!.task_type}/${ROWS[i - 1]!.key}`;

describe("GEdit-Bench end to end", () => {
  it("scores SC = min, PQ = min, O = √(SC·PQ), averages tasks then tasks, and reports exclusions", async () => {
    const { judge, make } = await setup();
    const outDir = mkdtempSync(join(tmpdir(), "gedit-out-"));
    const editor = codingEditor();
    const report = await make().run(editor, { outDir, batchSize: 3 });
    expect(report.benchmark).toBe("gedit-en");

    const sample = (i: number) => report.items.find((r) => r.key === key(i))!;
    expect(sample(1).scores).toEqual({ SC: 6, PQ: 7, O: Math.sqrt(42) });
    expect(sample(2).scores).toEqual({ SC: 4, PQ: 8, O: Math.sqrt(32) });
    expect(sample(3).scores).toEqual({ SC: 10, PQ: 5, O: Math.sqrt(50) });
    expect(sample(5).scores).toEqual({ SC: 6, PQ: 7, O: Math.sqrt(42) });

    const bg = { SC: mean([6, 4]), PQ: mean([7, 8]), O: mean([Math.sqrt(42), Math.sqrt(32)]) };
    const all = report.metrics.all;
    expect(all.tasks.background_change).toMatchObject({ ...bg, count: 2 });
    expect(all.SC).toBeCloseTo(mean([bg.SC, 10, 6]), 12);
    expect(all.PQ).toBeCloseTo(mean([bg.PQ, 5, 7]), 12);
    expect(all.O).toBeCloseTo(mean([bg.O, Math.sqrt(50), Math.sqrt(42)]), 12);
    expect(all.O).not.toBeCloseTo(Math.sqrt(all.SC * all.PQ), 3);
    expect(report.overall).toBeCloseTo(all.O, 12);
    expect(report.categories.background_change!.mean).toBeCloseTo(bg.O, 12);
    // Intersection: items 1, 3, 5 (2 is not in it; 4 and 8 failed).
    expect(report.metrics.intersection.count).toBe(3);
    expect(report.metrics.intersection.O).toBeCloseTo(
      mean([Math.sqrt(42), Math.sqrt(50), Math.sqrt(42)]),
      12,
    );

    expect(report.excluded).toBe(4);
    expect(report.exclusions).toEqual({
      "judge-reply": [key(4)],
      "judge-request": [key(6)],
      "bad-entry": [key(7)],
      "missing-image": [key(8)],
    });
    expect(sample(4).error).toMatch(/semantic-consistency judge call: 2 replies did not parse/);
    expect(sample(6).error).toMatch(/perceptual-quality judge call: HTTP 400.*flagged/);
    expect(sample(7).error).toMatch(/unknown task_type "teleport"/);

    // Judge requests: SC = text, source, edited; PQ = text, edited; the instruction only in SC;
    // images resized by the area-512 protocol (raw 64×40 → 647×404, edited 48×48 → 512×512).
    const sc = judge.calls.find((c) => c.text.includes("Make the car red."))!;
    expect(sc.images.map((im) => [im.width, im.height])).toEqual([
      [647, 404],
      [512, 512],
    ]);
    expect(sc.maxTokens).toBe(1400);
    const pq = judge.calls.find(
      (c) => !c.text.includes("Editing instruction") && Math.round(c.images[0]!.data[0]! / 20) === 3,
    )!;
    expect(pq.images.map((im) => [im.width, im.height])).toEqual([[512, 512]]);
    expect(pq.text).not.toContain("Make the car red.");

    // Outputs in the official layout, the source beside them, journal and reports.
    const png = join(outDir, "fullset", "color_alter", "en", `${ROWS[2]!.key}.png`);
    expect(existsSync(png)).toBe(true);
    expect(existsSync(join(outDir, "fullset", "color_alter", "en", `${ROWS[2]!.key}_SRCIMG.png`))).toBe(true);
    // Items 1–6 are edited; 7 (unknown task) and 8 (no image) never reach the editor.
    expect(editor.seen).toEqual(ROWS.slice(0, 6).map((r) => r.instruction));
    const md = readFileSync(join(outDir, "results.md"), "utf8");
    expect(md).toMatch(/\| Background Change \| 5\.000 \| 7\.500 \|/);
    expect(md).toMatch(/missing-image: 1/);
    const journal = readFileSync(join(outDir, "items.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as GEditItemRecord);
    expect(journal.find((r) => r.key === key(5))!.replies!.quality).toHaveLength(1);
    expect(journal.find((r) => r.key === key(4))!.replies!.semantic).toHaveLength(2);
    expect(report.protocol.judge).toMatchObject({
      preprocess: "area-512",
      randomFallback: false,
      model: "judge-v",
    });
    expect(report.protocol.generation).toEqual(editor.protocol);
  });

  it("resumes an interrupted run: no item is edited or judged twice, failed judge calls are retried", async () => {
    const { make, state } = await setup();
    const outDir = mkdtempSync(join(tmpdir(), "gedit-resume-"));
    const first = codingEditor();
    const stop = new Error("stop");
    await expect(
      make().run(first, {
        outDir,
        onProgress: (done) => {
          if (done === 2) throw stop;
        },
      }),
    ).rejects.toBe(stop);
    const scored = readFileSync(join(outDir, "items.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as GEditItemRecord)
      .filter((r) => r.O !== undefined)
      .map((r) => indexOfInstruction.get(r.instruction)!);
    expect(scored.length).toBeGreaterThan(0);
    expect(first.seen.length).toBeLessThan(6);

    state.healthy = true;
    state.calls.length = 0;
    const second = codingEditor();
    const report = await make().run(second, { outDir });
    for (const instruction of second.seen) expect(first.seen).not.toContain(instruction);
    expect([...first.seen, ...second.seen].sort()).toEqual(
      ROWS.slice(0, 6)
        .map((r) => r.instruction)
        .sort(),
    );
    for (const i of scored) {
      expect(state.calls).not.toContain(`sc${i}`);
      expect(state.calls).not.toContain(`pq${i}`);
    }
    // Item 6's PQ call failed with HTTP 400 before; the judge now answers.
    expect(report.items.find((r) => r.key === key(6))!.scores).toEqual({ SC: 7, PQ: 6, O: Math.sqrt(42) });
    expect(report.items.find((r) => r.key === key(1))!.scores).toEqual({ SC: 6, PQ: 7, O: Math.sqrt(42) });
    expect(report.excluded).toBe(3);
  });

  it("runs GEdit-Bench-CN on the cn rows only", async () => {
    const { make } = await setup();
    const editor = codingEditor();
    const report = await make({ language: "cn" }).run(editor, {
      outDir: mkdtempSync(join(tmpdir(), "gedit-cn-")),
    });
    expect(report.benchmark).toBe("gedit-cn");
    expect(editor.seen).toEqual(["把背景换成海滩。", "把车变成红色。"]);
    expect(report.metrics.all.tasks.background_change).toMatchObject({ SC: 8, PQ: 6, O: Math.sqrt(48) });
    expect(report.metrics.all.tasks.color_alter).toMatchObject({ SC: 3, PQ: 4, O: Math.sqrt(12) });
    expect(report.overall).toBeCloseTo(mean([Math.sqrt(48), Math.sqrt(12)]), 12);
    expect(report.metrics.intersection.O).toBeCloseTo(Math.sqrt(48), 12);
  });

  it("runs the intersection subset only, and the match-source protocol sizes the edit like input_image", async () => {
    const { make, judge } = await setup();
    const editor = codingEditor();
    const report = await make({ subset: "intersection", preprocess: "match-source" }).run(editor, {
      outDir: mkdtempSync(join(tmpdir(), "gedit-inter-")),
    });
    expect(report.subset).toBe("intersection");
    expect(report.items.map((r) => r.key)).toEqual([1, 3, 4, 5, 8].map(key));
    expect(editor.seen).toEqual([1, 3, 4, 5].map((i) => ROWS[i - 1]!.instruction));
    const sc = judge.calls.find((c) => c.text.includes("Make the car red."))!;
    expect(sc.images.map((im) => [im.width, im.height])).toEqual([
      [40, 24],
      [40, 24],
    ]);
    expect(report.protocol.judge).toMatchObject({ preprocess: "match-source" });
  });
});
