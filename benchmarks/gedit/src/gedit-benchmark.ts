/**
 * GEdit-Bench as core's Benchmark: every row of the chosen language (and subset) is edited by the
 * Editor (saved as `fullset/<task_type>/<lang>/<key>.png`, the official layout), then judged with
 * VIEScore: a semantic-consistency call (instruction, source, edited → editing success, over-editing)
 * and a perceptual-quality call (edited → naturalness, artifacts). Per sample SC = min of the first
 * pair, PQ = min of the second, O = √(SC·PQ); per task the means; reported SC, PQ and O are the means
 * over the 11 tasks. Finished items are journalled in items.jsonl, so a rerun into the folder resumes.
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
  type BenchJudgeAnswer,
  type BenchJudgeOptions,
  type ChatContentPart,
  connectBenchJudge,
} from "@edit-r1/rewards";
import { type GEditPreprocess, judgeJpegDataUrl, preprocessForJudge } from "./gedit-preprocess.js";
import { GEDIT_TASK_NAMES, GEDIT_TASK_TYPES, type GEditLanguage, type GEditTaskType } from "./gedit-tasks.js";
import {
  GEditDataError,
  type GEditItem,
  type LoadGEditOptions,
  loadGEdit,
  readGEditImages,
} from "./load-gedit.js";
import { parseVieScoreReply, VieScoreReplyError } from "./parse-viescore-reply.js";
import { renderQualityPrompt, renderSemanticPrompt, VIESCORE_PROMPT_VERSION } from "./viescore-prompts.js";

export type GEditFailureKind = "bad-entry" | "missing-image" | "generation" | "judge-request" | "judge-reply";

/** One line of items.jsonl. */
export interface GEditItemRecord {
  /** `<task_type>/<key>`. */
  key: string;
  category: string;
  datasetKey: string;
  language: string;
  instruction: string;
  intersection: boolean;
  /** The output, relative to the output folder, once it exists. */
  edited?: string;
  /** [editing success, over-editing]. */
  semantic?: [number, number];
  /** [naturalness, artifacts]. */
  quality?: [number, number];
  SC?: number;
  PQ?: number;
  /** √(SC·PQ): the sample score. */
  O?: number;
  /** Raw judge replies, per call, re-asks included. */
  replies?: { semantic: string[]; quality: string[] };
  error?: string;
  errorKind?: GEditFailureKind;
}

/** SC, PQ and O as published: task means, then their mean over the tasks that have scored items. */
export interface GEditMetrics {
  SC: number;
  PQ: number;
  O: number;
  tasks: Partial<Record<GEditTaskType, { SC: number; PQ: number; O: number; count: number }>>;
  /** Items with a score. */
  count: number;
}

export interface GEditReport extends BenchmarkReport {
  language: GEditLanguage;
  subset: "full" | "intersection";
  /** `all`: every item run; `intersection`: those with Intersection_exist, the paper's second column. */
  metrics: { all: GEditMetrics; intersection: GEditMetrics };
  exclusions: Partial<Record<GEditFailureKind, string[]>>;
}

export interface GEditBenchmarkOptions extends LoadGEditOptions {
  judge?: BenchJudgeOptions;
  /** Run only the Intersection_exist rows (default "full"). */
  subset?: "full" | "intersection";
  /** How the judge's images are prepared (default "area-512", the current official scorer). */
  preprocess?: GEditPreprocess;
  /**
   * The source the editor gets: the raw image (default; the adapter resizes it to its pinned resolution)
   * or the benchmark's pre-resized `input_image`. Missing raw images fall back to `input_image`.
   */
  editorSource?: "input_image_raw" | "input_image";
}

export interface GEditBenchmark extends Benchmark {
  run(editor: Editor, options?: BenchmarkRunOptions): Promise<GEditReport>;
}

/** The official max_tokens of the VIEScore GPT path. */
export const GEDIT_JUDGE_MAX_TOKENS = 1400;

export function createGEditBenchmark(options: GEditBenchmarkOptions = {}): GEditBenchmark {
  const language = options.language ?? "en";
  return {
    name: `gedit-${language}`,
    run: (editor, runOptions) => runGEdit(options, editor, runOptions ?? {}),
  };
}

interface Generated {
  item: GEditItem;
  editedPath: string;
}

async function runGEdit(
  options: GEditBenchmarkOptions,
  editor: Editor,
  run: BenchmarkRunOptions,
): Promise<GEditReport> {
  const language = options.language ?? "en";
  const subset = options.subset ?? "full";
  const preprocess = options.preprocess ?? "area-512";
  const editorSource = options.editorSource ?? "input_image_raw";
  const name = `gedit-${language}`;
  const outDir = resolve(run.outDir ?? join("bench-results", name));
  const batchSize = benchmarkBatchSize(run);
  const data = await loadGEdit(options);
  if (subset === "intersection" && !data.hasIntersectionColumn) {
    throw new GEditDataError(
      `the shards in ${data.root} have no Intersection_exist column, so the intersection subset is unknown; run the full set`,
    );
  }
  const selected = subset === "intersection" ? data.items.filter((i) => i.intersection) : data.items;
  const items = run.limit !== undefined ? selected.slice(0, Math.max(0, run.limit)) : selected;
  const judge = await connectBenchJudge(options.judge ?? {}, { maxTokens: GEDIT_JUDGE_MAX_TOKENS });
  const protocol: Record<string, unknown> = {
    benchmark: `GEdit-Bench-${language.toUpperCase()}`,
    language,
    subset,
    editor: editor.name,
    generation: editor.protocol,
    editorSource,
    judge: {
      ...judge.settings,
      prompts: VIESCORE_PROMPT_VERSION,
      preprocess,
      images: "JPEG quality 75; SC: source then edited; PQ: edited only",
      randomFallback: false,
    },
    data: {
      root: data.root,
      shards: data.shards.map((s) => relative(data.root, s)),
      languages: data.languages,
      intersectionColumn: data.hasIntersectionColumn,
      items: items.length,
    },
    aggregation:
      "SC = min(success, over-editing); PQ = min(naturalness, artifacts); O = √(SC·PQ); task means; mean of tasks",
  };
  await claimOutDir(outDir, {
    benchmark: name,
    editor: editor.name,
    generation: editor.protocol,
    editorSource,
    judgeModel: judge.model,
    prompts: VIESCORE_PROMPT_VERSION,
    preprocess,
  });
  const journal = await ItemJournal.open<GEditItemRecord>(join(outDir, "items.jsonl"));

  const records = await editThenJudge({
    items,
    journal,
    keyOf: (item) => item.id,
    isFinal: (record) => record.O !== undefined,
    batchSize,
    onProgress: run.onProgress,
    generate: (batch) => generate(batch, editor, outDir, editorSource),
    judge: (g) => judgeItem(g, judge, outDir, preprocess),
  });
  const results: BenchmarkItemResult[] = records.map((r) => ({
    key: r.key,
    category: r.category,
    ...(r.O !== undefined ? { score: r.O, scores: { SC: r.SC!, PQ: r.PQ!, O: r.O } } : { error: r.error }),
  }));
  const exclusions = exclusionsByKind(records, (r) => r.O !== undefined, "judge-reply");
  const report: GEditReport = {
    ...aggregateBenchmark(name, results, protocol, GEDIT_TASK_TYPES),
    language,
    subset,
    metrics: {
      all: gEditMetrics(records),
      intersection: gEditMetrics(records.filter((r) => r.intersection)),
    },
    exclusions,
  };
  const byId = new Map(items.map((item) => [item.id, item]));
  await writeBenchmarkOutputs(outDir, report, (result) => {
    const item = byId.get(result.key)!;
    const record = journal.get(result.key);
    const folder = outputFolder(item);
    const source = join(folder, `${item.key}_SRCIMG.png`);
    const detail =
      record?.O !== undefined
        ? ` (SC ${record.SC} = min${JSON.stringify(record.semantic)} · PQ ${record.PQ} = min${JSON.stringify(record.quality)})`
        : "";
    return {
      source: existsSync(join(outDir, source)) ? source : undefined,
      edited: record?.edited,
      instruction: `${item.instruction}${detail}`,
    };
  });
  await writeFileAtomic(join(outDir, "results.md"), gEditMarkdown(report));
  return report;
}

/** Task means of SC, PQ and O over scored records, and their unweighted means over the tasks. */
export function gEditMetrics(records: readonly GEditItemRecord[]): GEditMetrics {
  const tasks: GEditMetrics["tasks"] = {};
  let count = 0;
  for (const task of GEDIT_TASK_TYPES) {
    const scored = records.filter((r) => r.category === task && r.O !== undefined);
    if (scored.length === 0) continue;
    count += scored.length;
    const mean = (f: (r: GEditItemRecord) => number) => scored.reduce((s, r) => s + f(r), 0) / scored.length;
    tasks[task] = {
      SC: mean((r) => r.SC!),
      PQ: mean((r) => r.PQ!),
      O: mean((r) => r.O!),
      count: scored.length,
    };
  }
  const per = Object.values(tasks);
  const macro = (f: (t: { SC: number; PQ: number; O: number }) => number) =>
    per.length ? per.reduce((s, t) => s + f(t), 0) / per.length : Number.NaN;
  return { SC: macro((t) => t.SC), PQ: macro((t) => t.PQ), O: macro((t) => t.O), tasks, count };
}

/** `fullset/<task_type>/<lang>/`, the layout the official scorers read. */
function outputFolder(item: GEditItem): string {
  return join("fullset", item.taskType, item.language);
}

async function generate(
  batch: readonly GEditItem[],
  editor: Editor,
  outDir: string,
  editorSource: "input_image_raw" | "input_image",
): Promise<{ generated: Generated[]; failed: GEditItemRecord[] }> {
  const generated: Generated[] = [];
  const failed: GEditItemRecord[] = [];
  const toEdit: Array<{ item: GEditItem; request: EditRequest; editedPath: string }> = [];
  for (const item of batch) {
    if (item.problem !== undefined) {
      failed.push(failure(item, "bad-entry", item.problem));
      continue;
    }
    const folder = join(outDir, outputFolder(item));
    const editedPath = join(folder, `${item.key}.png`);
    // Outputs are written atomically, so one that exists is complete: resuming reuses it.
    if (existsSync(editedPath)) {
      generated.push({ item, editedPath });
      continue;
    }
    try {
      const images = await readGEditImages(item);
      const bytes =
        editorSource === "input_image" ? images.inputImage : (images.inputImageRaw ?? images.inputImage);
      if (bytes === undefined) throw new Error("the row has neither input_image nor input_image_raw bytes");
      const source = await decodeImage(bytes);
      // The benchmark's own source next to the output, as the older official scorer expects (and for the gallery).
      if (images.inputImage) {
        await writeFileAtomic(
          join(folder, `${item.key}_SRCIMG.png`),
          await encodePng(await decodeImage(images.inputImage)),
        );
      }
      toEdit.push({ item, editedPath, request: { key: item.id, instruction: item.instruction, source } });
    } catch (err) {
      failed.push(
        failure(item, "missing-image", `source image of ${item.id} unusable: ${(err as Error).message}`),
      );
    }
  }
  const saved = await saveEdits(editor, toEdit);
  for (const t of saved.saved) generated.push({ item: t.item, editedPath: t.editedPath });
  for (const { job, error } of saved.failed) failed.push(failure(job.item, "generation", error));
  return { generated, failed };
}

/** The two VIEScore calls for one item; never throws for judge problems. */
async function judgeItem(
  g: Generated,
  judge: BenchJudge,
  outDir: string,
  preprocess: GEditPreprocess,
): Promise<GEditItemRecord> {
  const { item } = g;
  const base: GEditItemRecord = { ...record(item), edited: relative(outDir, g.editedPath) };
  const replies = { semantic: [] as string[], quality: [] as string[] };
  let sourceUrl: string;
  let editedUrl: string;
  try {
    const images = await readGEditImages(item);
    const bytes =
      preprocess === "match-source" ? images.inputImage : (images.inputImageRaw ?? images.inputImage);
    if (bytes === undefined) throw new Error("the row has no source image bytes");
    const prepared = await preprocessForJudge(
      preprocess,
      await decodeImage(bytes),
      await decodeImage(await readFile(g.editedPath)),
    );
    [sourceUrl, editedUrl] = await Promise.all([
      judgeJpegDataUrl(prepared.source),
      judgeJpegDataUrl(prepared.edited),
    ]);
  } catch (err) {
    return {
      ...base,
      errorKind: "missing-image",
      error: `cannot prepare the images to judge: ${(err as Error).message}`,
    };
  }
  const image = (url: string): ChatContentPart => ({ type: "image_url", image_url: { url } });
  const [semantic, quality] = await Promise.all([
    ask(
      judge,
      [{ type: "text", text: renderSemanticPrompt(item.instruction) }, image(sourceUrl), image(editedUrl)],
      replies.semantic,
    ),
    ask(judge, [{ type: "text", text: renderQualityPrompt() }, image(editedUrl)], replies.quality),
  ]);
  if ("error" in semantic) {
    return {
      ...base,
      replies,
      errorKind: semantic.kind,
      error: `semantic-consistency judge call: ${semantic.error}`,
    };
  }
  if ("error" in quality) {
    return {
      ...base,
      replies,
      errorKind: quality.kind,
      error: `perceptual-quality judge call: ${quality.error}`,
    };
  }
  const SC = Math.min(...semantic.scores);
  const PQ = Math.min(...quality.scores);
  return {
    ...base,
    replies,
    semantic: semantic.scores,
    quality: quality.scores,
    SC,
    PQ,
    O: Math.sqrt(SC * PQ),
  };
}

type Asked = { scores: [number, number] } | { error: string; kind: GEditFailureKind };

/** One judge call, re-asked up to parseRetries times when the reply does not parse. */
async function ask(judge: BenchJudge, content: ChatContentPart[], replies: string[]): Promise<Asked> {
  const answer: BenchJudgeAnswer<[number, number]> = await askBenchJudge(
    judge,
    content,
    parseVieScoreReply,
    (err) => err instanceof VieScoreReplyError,
    replies,
  );
  if ("value" in answer) return { scores: answer.value };
  if (!answer.unparsed) return { error: answer.error, kind: answer.kind };
  return {
    error: `${replies.length} repl${replies.length === 1 ? "y" : "ies"} did not parse; last: ${answer.error}`,
    kind: "judge-reply",
  };
}

function record(item: GEditItem): GEditItemRecord {
  return {
    key: item.id,
    category: item.taskType,
    datasetKey: item.key,
    language: item.language,
    instruction: item.instruction,
    intersection: item.intersection,
  };
}

function failure(item: GEditItem, errorKind: GEditFailureKind, error: string): GEditItemRecord {
  return { ...record(item), error, errorKind };
}

/** Task table with SC, PQ and O, the full-set and intersection summaries, and what was excluded. */
export function gEditMarkdown(report: GEditReport): string {
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : "–");
  const { all, intersection } = report.metrics;
  const lines = [
    `## GEdit-Bench-${report.language.toUpperCase()} (${report.subset === "full" ? "full set" : "intersection subset"})`,
    "",
    "| task | SC | PQ | O | items |",
    "|---|---|---|---|---|",
    ...GEDIT_TASK_TYPES.filter((t) => all.tasks[t]).map((t) => {
      const m = all.tasks[t]!;
      return `| ${GEDIT_TASK_NAMES[t]} | ${f(m.SC)} | ${f(m.PQ)} | ${f(m.O)} | ${m.count} |`;
    }),
    `| **mean of tasks** | **${f(all.SC)}** | **${f(all.PQ)}** | **${f(all.O)}** | ${all.count} |`,
    `| intersection subset | ${f(intersection.SC)} | ${f(intersection.PQ)} | ${f(intersection.O)} | ${intersection.count} |`,
    "",
    "O is the mean over tasks of per-sample √(SC·PQ), so it is not √(mean SC · mean PQ).",
  ];
  const missing = GEDIT_TASK_TYPES.filter((t) => !all.tasks[t]);
  if (missing.length > 0)
    lines.push(`Tasks with no scored item (left out of the means): ${missing.join(", ")}.`);
  const kinds = Object.entries(report.exclusions);
  if (kinds.length > 0) {
    lines.push(
      "",
      `${report.excluded} item(s) excluded (no score; not counted as 0, never given a random score):`,
      "",
    );
    for (const [kind, keys] of kinds) {
      lines.push(
        `- ${kind}: ${keys.length} (${keys.slice(0, 20).join(", ")}${keys.length > 20 ? ", …" : ""})`,
      );
    }
  }
  lines.push(
    "",
    "<details><summary>core table (O per task)</summary>",
    "",
    benchmarkMarkdown(report),
    "",
    "</details>",
  );
  return `${lines.join("\n")}\n`;
}
