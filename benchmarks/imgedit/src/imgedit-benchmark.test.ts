import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeImage, ResumeMismatchError } from "@edit-r1/core";
import {
  type ChatContentPart,
  createScriptedJudge,
  type JudgeModelReply,
  type JudgeServer,
  startJudgeServer,
} from "@edit-r1/rewards";
import { afterEach, describe, expect, it } from "vitest";
import { createImgEditBenchmark, type ImgEditItemRecord } from "./imgedit-benchmark.js";
import { invertingEditor, TINY_ENTRIES, writeTinyImgEdit } from "./test-imgedit-data.js";

const servers: JudgeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const ENTRIES = {
  ...TINY_ENTRIES,
  "800": { id: "for_add/000001.jpg", prompt: "Teleport the ball.", edit_type: "teleport" },
};
const MISSING_IMAGE = TINY_ENTRIES["600"]!.id;

const reply = (a: number, b: number, c: number) =>
  `Brief reasoning: scripted\nFirst: ${a}\nSecond: ${b}\nThird: ${c}`;

/** The judge's behaviour per instruction; `healthy` turns the staged request failure off. */
function script(state: { healthy: boolean; calls: Map<string, number> }) {
  return (text: string): JudgeModelReply => {
    const instruction = /^Editing instruction: (.*)$/m.exec(text)?.[1] ?? "";
    const n = state.calls.get(instruction) ?? 0;
    state.calls.set(instruction, n + 1);
    switch (instruction) {
      case TINY_ENTRIES["22"]!.prompt:
        return { text: reply(5, 4, 4) };
      case TINY_ENTRIES["23"]!.prompt:
        return { text: reply(3, 5, 2) }; // breaks the cap: 5 > 3
      case TINY_ENTRIES["101"]!.prompt:
        return { text: reply(4, 4, 4) };
      case TINY_ENTRIES["150"]!.prompt:
        return { text: "**Prompt Compliance:** 4\n**Naturalness:** 4\n**Quality:** 4" }; // never parses
      case TINY_ENTRIES["210"]!.prompt:
        return state.healthy
          ? { text: reply(2, 1, 1) }
          : { fault: "status", status: 400, message: "content filter" };
      case TINY_ENTRIES["300"]!.prompt:
        return n === 0 ? { text: "Score: 4/5" } : { text: reply(2, 2, 1) }; // parses when asked again
      case TINY_ENTRIES["410"]!.prompt:
        return n === 0 ? { fault: "status", status: 503 } : { text: reply(5, 5, 5) }; // retried by the client
      case TINY_ENTRIES["520"]!.prompt:
        return { text: reply(1, 1, 1) };
      case TINY_ENTRIES["700"]!.prompt:
        return { text: reply(4, 3, 5) };
      default:
        return { fault: "status", status: 500, message: `unexpected instruction ${instruction}` };
    }
  };
}

async function setup() {
  const { dir, images } = await writeTinyImgEdit({ entries: ENTRIES, skipImages: [MISSING_IMAGE] });
  const state = { healthy: false, calls: new Map<string, number>() };
  const respond = script(state);
  const judge = createScriptedJudge({ id: "judge-x", respond: (req) => respond(req.text) });
  const server = await startJudgeServer({ models: [judge] });
  servers.push(server);
  const benchmark = createImgEditBenchmark({
    data: dir,
    judge: { url: server.url, model: "judge-x", retryBaseMs: 1, maxRetries: 2, env: {} },
  });
  return { dir, images, state, judge, server, benchmark };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

// The per-sample scores the scripted judge implies (capped as the rubric requires).
const EXPECTED_SAMPLE: Record<string, number> = {
  "22": mean([5, 4, 4]),
  "23": mean([3, 3, 2]),
  "101": 4,
  "300": mean([2, 2, 1]),
  "410": 5,
  "520": 1,
  "700": mean([4, 3, 4]),
};

describe("ImgEdit-Bench end to end", () => {
  it("edits, judges, aggregates and reports, excluding failures by kind", async () => {
    const { dir, images, judge, benchmark } = await setup();
    const outDir = mkdtempSync(join(tmpdir(), "imgedit-out-"));
    const editor = invertingEditor({ steps: 28, guidance: 2.5, seed: 42, resolution: 1024 });
    const progress: Array<[number, number]> = [];
    const report = await benchmark.run(editor, { outDir, onProgress: (d, t) => progress.push([d, t]) });

    // Sample scores.
    for (const [key, score] of Object.entries(EXPECTED_SAMPLE)) {
      expect(report.items.find((i) => i.key === key)?.score, key).toBeCloseTo(score, 12);
    }
    // Category = mean of its samples; overall = mean of the category means (not of the samples).
    const categories = {
      add: mean([EXPECTED_SAMPLE["22"]!, EXPECTED_SAMPLE["23"]!]),
      adjust: EXPECTED_SAMPLE["101"]!,
      remove: EXPECTED_SAMPLE["300"]!,
      background: EXPECTED_SAMPLE["410"]!,
      style: EXPECTED_SAMPLE["520"]!,
      action: EXPECTED_SAMPLE["700"]!,
    };
    expect(Object.keys(report.categories).sort()).toEqual(Object.keys(categories).sort());
    for (const [c, m] of Object.entries(categories)) expect(report.categories[c]!.mean, c).toBeCloseTo(m, 12);
    expect(report.categories.add!.count).toBe(2);
    expect(report.overall).toBeCloseTo(mean(Object.values(categories)), 12);
    expect(report.overall).not.toBeCloseTo(mean(Object.values(EXPECTED_SAMPLE)), 6);

    // Failures are reported per key with their kind, never scored.
    expect(report.items).toHaveLength(Object.keys(ENTRIES).length);
    expect(report.excluded).toBe(4);
    expect(report.exclusions).toEqual({
      "judge-reply": ["150"],
      "judge-request": ["210"],
      "missing-image": ["600"],
      "bad-entry": ["800"],
    });
    const failed = (key: string) => report.items.find((i) => i.key === key)!;
    expect(failed("150").score).toBeUndefined();
    expect(failed("150").error).toMatch(/2 judge replies did not parse/);
    expect(failed("210").error).toMatch(/HTTP 400.*content filter/);
    expect(failed("600").error).toContain(join(dir, MISSING_IMAGE));
    expect(failed("800").error).toMatch(/unknown edit_type "teleport"/);

    // The protocol records generation and judge settings, without secrets.
    expect(report.protocol.generation).toEqual(editor.protocol);
    expect(report.protocol.editor).toBe("test-invert");
    expect(report.protocol.judge).toMatchObject({ model: "judge-x", apiKey: "not set", enforceCap: true });

    // Outputs: <key>.png for every generated item, the journal, and the three reports.
    const generated = Object.keys(ENTRIES).filter((k) => k !== "600" && k !== "800");
    for (const key of generated) expect(existsSync(join(outDir, `${key}.png`)), key).toBe(true);
    expect(existsSync(join(outDir, "600.png"))).toBe(false);
    expect([...editor.seen].sort()).toEqual([...generated].sort());
    const results = JSON.parse(readFileSync(join(outDir, "results.json"), "utf8"));
    expect(results.overall).toBeCloseTo(report.overall, 12);
    const md = readFileSync(join(outDir, "results.md"), "utf8");
    expect(md).not.toMatch(/\| Hybrid \|/);
    expect(md).toMatch(/\| Add \| 3\.500 \| 2 \|/);
    expect(md).toMatch(/judge-request: 1 \(210\)/);
    expect(md).toMatch(/Extract, Replace, Hybrid/);
    const html = readFileSync(join(outDir, "gallery.html"), "utf8");
    expect(html).toContain('src="22.png"');
    expect(html).toContain("for_add/000001.jpg");
    const journal = readFileSync(join(outDir, "items.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ImgEditItemRecord);
    const capped = journal.find((r) => r.key === "23")!;
    expect(capped).toMatchObject({ judgeScores: [3, 5, 2], capped: true });
    expect(capped.scores).toEqual({
      "Prompt Compliance": 3,
      "Visual Naturalness": 3,
      "Physical & Detail Coherence": 2,
    });
    expect(journal.find((r) => r.key === "300")!.replies).toHaveLength(2);

    // Progress counts every item once, ending at the total.
    expect(progress[0]).toEqual([0, 11]);
    expect(progress.at(-1)).toEqual([11, 11]);

    // The judge got text, then the source (as its JPEG bytes), then the edit (PNG).
    const call = judge.calls.find((c) => c.text.includes(TINY_ENTRIES["101"]!.prompt))!;
    const parts = call.messages[0]!.content as ChatContentPart[];
    expect(parts.map((p) => p.type)).toEqual(["text", "image_url", "image_url"]);
    expect((parts[1] as { image_url: { url: string } }).image_url.url).toMatch(/^data:image\/jpeg;base64,/);
    expect((parts[2] as { image_url: { url: string } }).image_url.url).toMatch(/^data:image\/png;base64,/);
    const source = await decodeImage(join(dir, TINY_ENTRIES["101"]!.id));
    expect(call.images[0]!.data).toEqual(source.data);
    expect(call.images[1]!.data).toEqual(source.data.map((v) => 255 - v));
    expect(images.has(TINY_ENTRIES["101"]!.id)).toBe(true);
    expect(call.text).toContain("Visual Seamlessness");
  });

  it("resumes an interrupted run without redoing finished work, and rejudges items whose judge call failed", async () => {
    const { benchmark, state } = await setup();
    const outDir = mkdtempSync(join(tmpdir(), "imgedit-resume-"));
    const first = invertingEditor();
    const interrupt = new Error("interrupted");
    await expect(
      benchmark.run(first, {
        outDir,
        onProgress: (done) => {
          if (done === 4) throw interrupt;
        },
      }),
    ).rejects.toBe(interrupt);
    const finished = readFileSync(join(outDir, "items.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ImgEditItemRecord)
      .filter((r) => r.score !== undefined)
      .map((r) => r.key);
    expect(finished.length).toBeGreaterThan(0);
    expect(first.seen.length).toBeLessThan(9);

    // The judge recovers; the second run finishes the rest.
    state.healthy = true;
    state.calls.clear();
    const second = invertingEditor();
    const report = await benchmark.run(second, { outDir });
    for (const key of second.seen) expect(first.seen).not.toContain(key);
    expect([...first.seen, ...second.seen].sort()).toEqual(
      Object.keys(ENTRIES)
        .filter((k) => k !== "600" && k !== "800")
        .sort(),
    );
    for (const key of finished)
      expect(state.calls.has(ENTRIES[key as keyof typeof ENTRIES].prompt), key).toBe(false);
    for (const [key, score] of Object.entries(EXPECTED_SAMPLE)) {
      expect(report.items.find((i) => i.key === key)?.score, key).toBeCloseTo(score, 12);
    }
    // The item whose judge call failed with HTTP 400 is now judged.
    expect(report.items.find((i) => i.key === "210")?.score).toBeCloseTo(mean([2, 1, 1]), 12);
    expect(report.exclusions["judge-request"]).toBeUndefined();
    expect(report.excluded).toBe(3);
  });

  it("refuses to resume into a folder written with another generation protocol", async () => {
    const { benchmark } = await setup();
    const outDir = mkdtempSync(join(tmpdir(), "imgedit-mismatch-"));
    await benchmark.run(invertingEditor({ steps: 28 }), { outDir, limit: 1 });
    await expect(benchmark.run(invertingEditor({ steps: 8 }), { outDir, limit: 1 })).rejects.toThrow(
      ResumeMismatchError,
    );
  });

  it("honours limit and batchSize, and marks a whole batch failed when the editor throws", async () => {
    const { benchmark } = await setup();
    const outDir = mkdtempSync(join(tmpdir(), "imgedit-batch-"));
    const batches: number[] = [];
    const editor = {
      name: "broken",
      protocol: {},
      async edit(requests: readonly unknown[]) {
        batches.push(requests.length);
        throw new Error("CUDA out of memory");
      },
    };
    const report = await benchmark.run(editor, { outDir, limit: 3, batchSize: 2 });
    expect(batches).toEqual([2, 1]);
    expect(report.items.map((i) => i.key)).toEqual(["22", "23", "101"]);
    expect(report.exclusions).toEqual({ generation: ["22", "23", "101"] });
    expect(report.items[0]!.error).toMatch(/editor "broken" failed: CUDA out of memory/);
    expect(Number.isNaN(report.overall)).toBe(true);
  });
});
