/**
 * The run loop the judged benchmarks share: items without a final record are edited a batch at a time
 * and judged, every finished record is journalled before progress is reported, and judging one batch
 * overlaps with generating the next. Each benchmark keeps its own data, prompts, parsing and
 * aggregation, and hands those in as `generate` and `judge`.
 */
import { writeFileAtomic } from "@edit-r1/engine";
import { encodePng } from "./image-io.js";
import type { ItemJournal } from "./item-journal.js";
import type { BenchmarkRunOptions, Editor, EditRequest } from "./types.js";

export interface EditThenJudgeOptions<I, G, R extends { key: string }> {
  /** The items of this run, in report order (already cut to the run's limit). */
  items: readonly I[];
  journal: ItemJournal<R>;
  keyOf(item: I): string;
  /** Whether a journalled record is final; items whose record is not are done again on resume. */
  isFinal(record: R): boolean;
  batchSize: number;
  onProgress?: BenchmarkRunOptions["onProgress"];
  /** Edits one batch: what was generated (to judge) and what already failed (recorded as is). */
  generate(batch: readonly I[]): Promise<{ generated: G[]; failed: R[] }>;
  /** Judges one generated item; judge problems belong in the record, not in a throw. */
  judge(generated: G): Promise<R>;
}

/** Runs the loop and returns every item's record, in item order. */
export async function editThenJudge<I, G, R extends { key: string }>(
  options: EditThenJudgeOptions<I, G, R>,
): Promise<R[]> {
  const { items, journal, keyOf, onProgress } = options;
  const pending = items.filter((item) => {
    const record = journal.get(keyOf(item));
    return record === undefined || !options.isFinal(record);
  });
  let done = items.length - pending.length;
  onProgress?.(done, items.length);
  const finish = async (record: R) => {
    await journal.put(record);
    onProgress?.(++done, items.length);
  };
  // Judging a batch overlaps with generating the next one; an error (a failed journal write, a throwing
  // progress callback) stops the run at the next batch boundary, with everything finished so far on disk.
  let judging: Promise<unknown> = Promise.resolve();
  for (let start = 0; start < pending.length; start += options.batchSize) {
    const batch = pending.slice(start, start + options.batchSize);
    const { generated, failed } = await options.generate(batch);
    await judging;
    judging = Promise.all([
      ...failed.map((record) => finish(record)),
      ...generated.map(async (g) => finish(await options.judge(g))),
    ]);
    judging.catch(() => {});
  }
  await judging;
  return items.map((item) => journal.get(keyOf(item))!);
}

/** The run's batch size (default 1), checked before any work starts. */
export function benchmarkBatchSize(run: BenchmarkRunOptions): number {
  const batchSize = run.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize ${batchSize} must be a positive integer`);
  }
  return batchSize;
}

/** One request of a batch and where its output goes. */
export interface EditJob {
  request: EditRequest;
  editedPath: string;
}

/**
 * Runs the editor on a batch and writes each output as PNG, atomically (so an output that exists is
 * complete and a resumed run may reuse it). When the editor throws or miscounts, the jobs not saved
 * come back with the reason; an empty batch does not call the editor.
 */
export async function saveEdits<J extends EditJob>(
  editor: Editor,
  jobs: readonly J[],
): Promise<{ saved: J[]; failed: Array<{ job: J; error: string }> }> {
  const saved: J[] = [];
  if (jobs.length === 0) return { saved, failed: [] };
  try {
    const images = await editor.edit(jobs.map((j) => j.request));
    if (images.length !== jobs.length) {
      throw new Error(`returned ${images.length} images for ${jobs.length} requests`);
    }
    for (const [i, job] of jobs.entries()) {
      await writeFileAtomic(job.editedPath, await encodePng(images[i]!));
      saved.push(job);
    }
    return { saved, failed: [] };
  } catch (err) {
    const error = `editor "${editor.name}" failed: ${(err as Error).message}`;
    return { saved, failed: jobs.slice(saved.length).map((job) => ({ job, error })) };
  }
}

/** Keys of the records without a score, by why (records without a kind count as `fallback`). */
export function exclusionsByKind<R extends { key: string; errorKind?: string }>(
  records: readonly R[],
  isScored: (record: R) => boolean,
  fallback: NonNullable<R["errorKind"]>,
): Partial<Record<NonNullable<R["errorKind"]>, string[]>> {
  const exclusions: Partial<Record<NonNullable<R["errorKind"]>, string[]>> = {};
  for (const r of records) {
    if (!isScored(r))
      (exclusions[(r.errorKind ?? fallback) as NonNullable<R["errorKind"]>] ??= []).push(r.key);
  }
  return exclusions;
}
