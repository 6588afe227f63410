/**
 * ImgEdit-Bench (Basic) as core's Benchmark: every entry of basic_edit.json is edited by the Editor
 * (saved as `<key>.png`), judged once by an MLLM with its edit type's rubric and the two images
 * (source, then edited), parsed into three 1–5 scores, and aggregated as the leaderboard does:
 * sample = mean of three, category = mean of samples, overall = mean of the nine category means.
 * Finished items are journalled in items.jsonl as they finish, so a rerun into the same folder resumes.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import {
  aggregateBenchmark,
  type Benchmark,
  type BenchmarkItemResult,
  type BenchmarkReport,
  type BenchmarkRunOptions,
  benchmarkBatchSize,
  benchmarkMarkdown,
  claimOutDir,
  decodeImage,
  type Editor,
  type EditRequest,
  editThenJudge,
  encodePng,
  exclusionsByKind,
  ItemJournal,
  saveEdits,
  writeBenchmarkOutputs,
} from "@edit-r1/core";
import { writeFileAtomic } from "@edit-r1/engine";
import {
  askBenchJudge,
  type BenchJudge,
  type BenchJudgeOptions,
  type ChatContentPart,
  connectBenchJudge,
} from "@edit-r1/rewards";
import {
  IMGEDIT_CATEGORIES,
  IMGEDIT_CATEGORY_NAMES,
  IMGEDIT_RUBRIC_VERSION,
  IMGEDIT_RUBRICS,
  type ImgEditCategory,
  renderImgEditPrompt,
} from "./imgedit-rubrics.js";
import {
  categoryOf,
  type ImgEditItem,
  type LoadImgEditOptions,
  loadImgEditBasic,
} from "./load-imgedit-basic.js";
import { ImgEditReplyError, parseImgEditReply } from "./parse-imgedit-reply.js";

/** Why an item has no score. */
export type ImgEditFailureKind =
  | "bad-entry"
  | "missing-image"
  | "generation"
  | "judge-request"
  | "judge-reply";

/** One line of items.jsonl. */
export interface ImgEditItemRecord {
  key: string;
  category: string;
  instruction: string;
  /** The source image path as written in the benchmark JSON. */
  source: string;
  /** The output file, relative to the output folder, once it exists. */
  edited?: string;
  /** Sample score: mean of the three criteria (after the cap). */
  score?: number;
  /** Criterion scores by rubric label, after the cap. */
  scores?: Record<string, number>;
  /** The scores as the judge wrote them, before the cap. */
  judgeScores?: number[];
  capped?: boolean;
  /** Every judge reply for this item, raw (more than one when a reply did not parse and was re-asked). */
  replies?: string[];
  error?: string;
  errorKind?: ImgEditFailureKind;
}

export interface ImgEditReport extends BenchmarkReport {
  /** Keys of the excluded items by failure kind. */
  exclusions: Partial<Record<ImgEditFailureKind, string[]>>;
}

export interface ImgEditBenchmarkOptions extends LoadImgEditOptions {
  judge?: BenchJudgeOptions;
  /**
   * Apply the rubric's rule that the 2nd and 3rd scores never exceed the 1st (default true); the official
   * parser does not, so judges that break the rule score higher there.
   */
  enforceCap?: boolean;
}

export const IMGEDIT_BENCHMARK_NAME = "imgedit-basic";

/** core's Benchmark, with the richer report. */
export interface ImgEditBenchmark extends Benchmark {
  run(editor: Editor, options?: BenchmarkRunOptions): Promise<ImgEditReport>;
}

export function createImgEditBenchmark(options: ImgEditBenchmarkOptions = {}): ImgEditBenchmark {
  return {
    name: IMGEDIT_BENCHMARK_NAME,
    run: (editor, runOptions) => runImgEdit(options, editor, runOptions ?? {}),
  };
}

interface Generated {
  item: ImgEditItem;
  category: ImgEditCategory;
  editedPath: string;
}

async function runImgEdit(
  options: ImgEditBenchmarkOptions,
  editor: Editor,
  run: BenchmarkRunOptions,
): Promise<ImgEditReport> {
  const outDir = resolve(run.outDir ?? join("bench-results", IMGEDIT_BENCHMARK_NAME));
  const batchSize = benchmarkBatchSize(run);
  const data = await loadImgEditBasic(options);
  const items = run.limit !== undefined ? data.items.slice(0, Math.max(0, run.limit)) : data.items;
  const judge = await connectBenchJudge(options.judge ?? {});
  const enforceCap = options.enforceCap ?? true;
  const protocol: Record<string, unknown> = {
    benchmark: "ImgEdit-Bench Basic",
    editor: editor.name,
    generation: editor.protocol,
    judge: {
      ...judge.settings,
      rubric: IMGEDIT_RUBRIC_VERSION,
      images: "source then edited, file bytes with their true MIME type",
      enforceCap,
    },
    data: { json: data.jsonPath, sha256: data.jsonSha256, imageRoot: data.imageRoot, items: items.length },
    aggregation:
      "sample = mean of 3 criteria; category = mean of samples; overall = mean of 9 category means",
  };
  await claimOutDir(outDir, {
    benchmark: IMGEDIT_BENCHMARK_NAME,
    editor: editor.name,
    generation: editor.protocol,
    judgeModel: judge.model,
    rubric: IMGEDIT_RUBRIC_VERSION,
    enforceCap,
    dataSha256: data.jsonSha256,
  });
  const journal = await ItemJournal.open<ImgEditItemRecord>(join(outDir, "items.jsonl"));

  const records = await editThenJudge({
    items,
    journal,
    keyOf: (item) => item.key,
    isFinal: (record) => record.score !== undefined,
    batchSize,
    onProgress: run.onProgress,
    generate: (batch) => generate(batch, editor, outDir),
    judge: (g) => judgeItem(g, judge, outDir, enforceCap),
  });
  const results: BenchmarkItemResult[] = records.map((r) => ({
    key: r.key,
    category: r.category,
    ...(r.score !== undefined ? { score: r.score, scores: r.scores } : { error: r.error }),
  }));
  const exclusions = exclusionsByKind(records, (r) => r.score !== undefined, "judge-reply");
  const report: ImgEditReport = {
    ...aggregateBenchmark(IMGEDIT_BENCHMARK_NAME, results, protocol, IMGEDIT_CATEGORIES),
    exclusions,
  };
  const byKey = new Map(items.map((item) => [item.key, item]));
  await writeBenchmarkOutputs(outDir, report, (result) => {
    const item = byKey.get(result.key)!;
    const record = journal.get(result.key);
    const criteria = record?.scores
      ? ` (${Object.entries(record.scores)
          .map(([label, n]) => `${label} ${n}`)
          .join(" · ")})`
      : "";
    return {
      source: item.imagePath ? relative(outDir, item.imagePath) : undefined,
      edited: record?.edited,
      instruction: `${item.instruction}${criteria}`,
    };
  });
  await writeFileAtomic(join(outDir, "results.md"), imgEditMarkdown(report));
  return report;
}

/** Loads sources, runs the editor on those without an output yet, saves `<key>.png` atomically. */
async function generate(
  batch: readonly ImgEditItem[],
  editor: Editor,
  outDir: string,
): Promise<{ generated: Generated[]; failed: ImgEditItemRecord[] }> {
  const generated: Generated[] = [];
  const failed: ImgEditItemRecord[] = [];
  const toEdit: Array<{
    item: ImgEditItem;
    category: ImgEditCategory;
    request: EditRequest;
    editedPath: string;
  }> = [];
  for (const item of batch) {
    const category = categoryOf(item);
    if (item.problem !== undefined || category === undefined) {
      failed.push(failure(item, "bad-entry", item.problem ?? `unknown edit_type "${item.category}"`));
      continue;
    }
    const editedPath = join(outDir, `${item.key}.png`);
    // Outputs are written atomically, so one that exists is complete: resuming reuses it.
    if (existsSync(editedPath)) {
      generated.push({ item, category, editedPath });
      continue;
    }
    let bytes: Uint8Array;
    try {
      bytes = await readFile(item.imagePath);
    } catch (err) {
      failed.push(
        failure(
          item,
          "missing-image",
          `source image ${item.imagePath} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check the image folder (imageRoot)`,
        ),
      );
      continue;
    }
    try {
      const source = await decodeImage(bytes);
      toEdit.push({
        item,
        category,
        editedPath,
        request: { key: item.key, instruction: item.instruction, source, sourceKey: item.imageId },
      });
    } catch (err) {
      failed.push(
        failure(
          item,
          "missing-image",
          `source image ${item.imagePath} cannot be decoded: ${(err as Error).message}`,
        ),
      );
    }
  }
  const saved = await saveEdits(editor, toEdit);
  for (const t of saved.saved)
    generated.push({ item: t.item, category: t.category, editedPath: t.editedPath });
  for (const { job, error } of saved.failed) failed.push(failure(job.item, "generation", error));
  return { generated, failed };
}

/** One judge call (plus re-asks when the reply does not parse); never throws for judge problems. */
async function judgeItem(
  g: Generated,
  judge: BenchJudge,
  outDir: string,
  enforceCap: boolean,
): Promise<ImgEditItemRecord> {
  const { item, category } = g;
  const base: ImgEditItemRecord = {
    key: item.key,
    category: item.category,
    instruction: item.instruction,
    source: item.imageId,
    edited: relative(outDir, g.editedPath),
  };
  let content: ChatContentPart[];
  try {
    const [source, edited] = await Promise.all([readFile(item.imagePath), readFile(g.editedPath)]);
    content = [
      { type: "text", text: renderImgEditPrompt(category, item.instruction) },
      { type: "image_url", image_url: { url: await dataUrlOf(source) } },
      { type: "image_url", image_url: { url: await dataUrlOf(edited) } },
    ];
  } catch (err) {
    return {
      ...base,
      errorKind: "missing-image",
      error: `cannot read an image to judge: ${(err as Error).message}`,
    };
  }
  const replies: string[] = [];
  const answer = await askBenchJudge(
    judge,
    content,
    (text) => parseImgEditReply(text, { enforceCap }),
    (err) => err instanceof ImgEditReplyError,
    replies,
  );
  if (!("value" in answer)) {
    const error = answer.unparsed
      ? `${replies.length} judge repl${replies.length === 1 ? "y" : "ies"} did not parse; last: ${answer.error}`
      : `judge: ${answer.error}`;
    return { ...base, replies, errorKind: answer.kind, error };
  }
  const parsed = answer.value;
  const labels = IMGEDIT_RUBRICS[category].criteria.map((c) => c.label);
  return {
    ...base,
    replies,
    score: parsed.mean,
    scores: Object.fromEntries(labels.map((label, i) => [label, parsed.scores[i]!])),
    judgeScores: parsed.raw,
    capped: parsed.capped,
  };
}

function failure(item: ImgEditItem, errorKind: ImgEditFailureKind, error: string): ImgEditItemRecord {
  return {
    key: item.key,
    category: item.category,
    instruction: item.instruction,
    source: item.imageId,
    error,
    errorKind,
  };
}

/**
 * The image as a data URL with its real MIME type. The official script labels every file image/png,
 * JPEG originals included; servers that check the label reject that, so we do not copy it.
 */
async function dataUrlOf(bytes: Uint8Array): Promise<string> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let mime: string | undefined;
  if (b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])))
    mime = "image/png";
  else if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) mime = "image/jpeg";
  else if (b.toString("latin1", 0, 4) === "RIFF" && b.toString("latin1", 8, 12) === "WEBP")
    mime = "image/webp";
  if (mime) return `data:${mime};base64,${b.toString("base64")}`;
  // Any other format sharp reads is re-encoded losslessly as PNG, which every judge accepts.
  const png = await encodePng(await decodeImage(bytes));
  return `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
}

/** The results table with leaderboard names, plus what was excluded and why. */
export function imgEditMarkdown(report: ImgEditReport): string {
  const renamed: BenchmarkReport = {
    ...report,
    categories: Object.fromEntries(
      Object.entries(report.categories).map(([k, v]) => [
        k in IMGEDIT_CATEGORY_NAMES ? IMGEDIT_CATEGORY_NAMES[k as ImgEditCategory] : k,
        v,
      ]),
    ),
  };
  const lines = [benchmarkMarkdown(renamed)];
  const missing = IMGEDIT_CATEGORIES.filter((c) => !(c in report.categories));
  if (missing.length > 0) {
    lines.push(
      `Categories with no scored item (the overall is then the mean of fewer than 9): ${missing.map((c) => IMGEDIT_CATEGORY_NAMES[c]).join(", ")}.`,
    );
  }
  const kinds = Object.entries(report.exclusions);
  if (kinds.length > 0) {
    lines.push("", "Excluded items (no score; not counted as 0):", "");
    for (const [kind, keys] of kinds) {
      lines.push(
        `- ${kind}: ${keys.length} (${keys.slice(0, 20).join(", ")}${keys.length > 20 ? ", …" : ""})`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}
