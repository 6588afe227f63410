/**
 * Loads GEdit-Bench from its Hugging Face dataset snapshot (or a local folder) in its on-disk format:
 * parquet shards with the columns task_type, key, instruction, instruction_language, input_image,
 * input_image_raw (image structs { bytes, path }) and Intersection_exist. Only the small columns are read
 * up front; the images of an item are read when it is run, so the whole set never sits in memory.
 */
import { basename, join } from "node:path";
import { EditR1Error } from "@edit-r1/core";
import {
  DataFileError,
  HubError,
  listSnapshotFiles,
  type ResolveOptions,
  readParquetRows,
  resolveSnapshotDir,
} from "@edit-r1/hub";
import { type GEditLanguage, isGEditTaskType } from "./gedit-tasks.js";

export const DEFAULT_GEDIT_DATA = "stepfun-ai/GEdit-Bench";

export interface GEditItem {
  /** The data set's `key` (a hex string); the output is `<key>.png`. */
  key: string;
  /** Unique within a run: `<task_type>/<key>`. */
  id: string;
  taskType: string;
  language: string;
  instruction: string;
  /** `Intersection_exist`: in the subset every compared model answered. */
  intersection: boolean;
  /** The parquet shard and row holding the images. */
  shard: string;
  row: number;
  /** Why the row cannot be run; the run reports it as a failed item. */
  problem?: string;
}

export interface GEditData {
  /** Rows of the requested language, in shard order. */
  items: GEditItem[];
  root: string;
  shards: string[];
  /** Rows per instruction language over all shards (to spot `zh` vs `cn` and the like). */
  languages: Record<string, number>;
  /** False when the shards have no Intersection_exist column (then no item is in the subset). */
  hasIntersectionColumn: boolean;
}

export interface LoadGEditOptions {
  /** A local folder or a Hugging Face dataset id, looked up in the Hub cache offline. Default "stepfun-ai/GEdit-Bench". */
  data?: string;
  /** Default "en". */
  language?: GEditLanguage;
  hub?: Omit<ResolveOptions, "repoType">;
}

/** The data set cannot be used at all; the message says what to do. */
export class GEditDataError extends EditR1Error {
  override readonly name = "GEditDataError";
}

const REQUIRED = ["task_type", "key", "instruction", "instruction_language"] as const;

export async function loadGEdit(options: LoadGEditOptions = {}): Promise<GEditData> {
  const data = options.data ?? DEFAULT_GEDIT_DATA;
  const language = options.language ?? "en";
  const hub = { ...options.hub, repoType: "dataset" as const };
  let root: string;
  let files: string[];
  try {
    root = await resolveSnapshotDir(data, hub);
    files = await listSnapshotFiles(data, hub);
  } catch (err) {
    if (!(err instanceof HubError)) throw err;
    throw new GEditDataError(
      `GEdit-Bench data "${data}" not found: ${err.message} (huggingface-cli download stepfun-ai/GEdit-Bench --repo-type dataset)`,
      { cause: err },
    );
  }
  const shards = files.filter((f) => f.endsWith(".parquet")).map((f) => join(root, f));
  if (shards.length === 0) {
    const arrow = files.some((f) => f.endsWith(".arrow"));
    throw new GEditDataError(
      `no parquet shards in ${root}${arrow ? " (it holds Arrow files, as written by datasets.save_to_disk; convert them with datasets' to_parquet, or download the Hub copy, which is parquet)" : ""}; GEdit-Bench is read from its parquet files.`,
    );
  }
  const items: GEditItem[] = [];
  const languages: Record<string, number> = {};
  const seen = new Set<string>();
  let hasIntersectionColumn = true;
  for (const shard of shards) {
    let rows: Record<string, unknown>[];
    try {
      rows = await readParquetRows(shard, { columns: [...REQUIRED] });
    } catch (err) {
      const missing = /column not found: (\S+)/.exec((err as Error).message)?.[1];
      if (missing) {
        throw new GEditDataError(
          `${shard} has no "${missing}" column; GEdit-Bench shards need ${REQUIRED.join(", ")}, input_image and input_image_raw. Is this the GEdit-Bench data set?`,
          { cause: err },
        );
      }
      throw err;
    }
    const flags = await intersectionFlags(shard, rows.length);
    if (flags === undefined) hasIntersectionColumn = false;
    rows.forEach((r, row) => {
      const lang = String(r.instruction_language ?? "");
      languages[lang] = (languages[lang] ?? 0) + 1;
      if (lang !== language) return;
      const key = typeof r.key === "string" && r.key !== "" ? r.key : `${basename(shard)}#${row}`;
      const taskType = String(r.task_type ?? "");
      const item: GEditItem = {
        key,
        id: `${taskType}/${key}`,
        taskType,
        language: lang,
        instruction: typeof r.instruction === "string" ? r.instruction : "",
        intersection: flags?.[row] ?? false,
        shard,
        row,
      };
      if (typeof r.key !== "string" || r.key === "") {
        item.problem = `row ${row} of ${shard} has no key; the data set is damaged, re-download it`;
      } else if (!isGEditTaskType(taskType)) {
        item.problem = `item ${key} has unknown task_type "${taskType}"; GEdit-Bench has 11 task types (background_change … tone_transfer)`;
      } else if (item.instruction === "") {
        item.problem = `item ${key} (${taskType}) has an empty instruction`;
      } else if (seen.has(item.id)) {
        item.problem = `item ${key} (${taskType}, ${lang}) appears twice; only the first is run`;
        item.id = `${item.id}#${row}`;
      }
      seen.add(item.id);
      items.push(item);
    });
  }
  if (items.length === 0) {
    throw new GEditDataError(
      `no rows with instruction_language "${language}" in ${root} (languages found: ${JSON.stringify(languages)}); GEdit-Bench uses "en" and "cn".`,
    );
  }
  return { items, root, shards, languages, hasIntersectionColumn };
}

/** `Intersection_exist` (or a lower-case spelling) per row; undefined when neither column exists. */
async function intersectionFlags(shard: string, count: number): Promise<boolean[] | undefined> {
  for (const column of ["Intersection_exist", "intersection_exist"]) {
    try {
      const rows = await readParquetRows(shard, { columns: [column] });
      if (rows.length === count) return rows.map((r) => r[column] === true || r[column] === 1);
    } catch (err) {
      if (!/column not found/.test((err as Error).message)) throw err;
    }
  }
  return undefined;
}

export interface GEditImages {
  /** The pre-resized source (about 512² area). */
  inputImage?: Uint8Array;
  /** The source at its original resolution. */
  inputImageRaw?: Uint8Array;
}

/** The image bytes of one item, from its shard. */
export async function readGEditImages(item: GEditItem): Promise<GEditImages> {
  const [row] = await readParquetRows(item.shard, {
    columns: ["input_image", "input_image_raw"],
    rowStart: item.row,
    rowEnd: item.row + 1,
  }).catch((err: unknown) => {
    throw new DataFileError(
      item.shard,
      `cannot read the images of item ${item.key}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  });
  return { inputImage: bytesOf(row?.input_image), inputImageRaw: bytesOf(row?.input_image_raw) };
}

/** The bytes of a Hugging Face image struct `{ bytes, path }`, or of a plain binary cell. */
function bytesOf(cell: unknown): Uint8Array | undefined {
  if (cell instanceof Uint8Array) return cell.length > 0 ? cell : undefined;
  const bytes = (cell as { bytes?: unknown } | null | undefined)?.bytes;
  return bytes instanceof Uint8Array && bytes.length > 0 ? bytes : undefined;
}
