import { access, readFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, relative, resolve } from "node:path";
import { EditR1Error } from "./errors.js";
import { groupKeyOf } from "./group-stats.js";
import { decodeImage } from "./image-io.js";
import type { EditRequest, RgbImage } from "./types.js";

/** One problem with one line of an Edit-R1 JSONL file. */
export interface DatasetIssue {
  /** 1-based line number. */
  line: number;
  reason: string;
}

/** The data set failed validation; `issues` lists every bad line, not only the first. */
export class EditDatasetError extends EditR1Error {
  constructor(
    readonly file: string,
    readonly issues: readonly DatasetIssue[],
  ) {
    const shown = issues.slice(0, 50).map((i) => `  line ${i.line}: ${i.reason}`);
    if (issues.length > 50) shown.push(`  … and ${issues.length - 50} more`);
    super(
      `${file}: ${issues.length} bad line${issues.length === 1 ? "" : "s"}; fix them and run again ` +
        `(each line is {"prompt": string, "image": path relative to the file, "requirement"?: string}):\n${shown.join("\n")}`,
    );
  }
}

/** One validated row: the request without its pixels, which load on demand. */
export interface EditDatasetRow {
  line: number;
  key: string;
  instruction: string;
  requirement?: string;
  /** Absolute path of the source image. */
  imagePath: string;
  /** The image path as written in the file; the source key of the group. */
  sourceKey: string;
}

/** Something the trainer can draw prompts from. */
export interface PromptSet {
  readonly size: number;
  /** The group key of row `index` without loading its image (bans are by group key). */
  groupKey(index: number): string;
  get(index: number): Promise<EditRequest>;
}

export interface LoadEditDatasetOptions {
  /** Decode every image during validation (default true); false only checks the files' headers. */
  decodeAll?: boolean;
  /** How many images validate at once. */
  concurrency?: number;
  /** How many decoded images `get` keeps. */
  cacheSize?: number;
}

/** An Edit-R1 JSONL data set (`train_metadata.jsonl`), validated on load. */
export class EditDataset implements PromptSet {
  private cache = new Map<number, Promise<RgbImage>>();

  private constructor(
    readonly file: string,
    readonly rows: readonly EditDatasetRow[],
    private readonly cacheSize: number,
  ) {}

  get size(): number {
    return this.rows.length;
  }

  /**
   * Reads and validates the whole file before any compute: malformed JSON, a missing or empty prompt,
   * a bad requirement, a missing or undecodable image. Throws one EditDatasetError listing every bad line.
   */
  static async load(file: string, options: LoadEditDatasetOptions = {}): Promise<EditDataset> {
    const path = resolve(file);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      throw new EditDatasetError(path, [
        { line: 0, reason: `cannot read the file (${(e as Error).message})` },
      ]);
    }
    const issues: DatasetIssue[] = [];
    const rows: EditDatasetRow[] = [];
    const dir = dirname(path);
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = i + 1;
      if (raw.trim() === "") return;
      let obj: unknown;
      try {
        obj = JSON.parse(raw);
      } catch (e) {
        issues.push({ line, reason: `malformed JSON (${(e as Error).message})` });
        return;
      }
      if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
        issues.push({ line, reason: "not a JSON object" });
        return;
      }
      const o = obj as Record<string, unknown>;
      const problems: string[] = [];
      if (typeof o.prompt !== "string") problems.push('missing "prompt" (a string)');
      else if (o.prompt.trim() === "") problems.push('"prompt" is empty');
      if (typeof o.image !== "string" || o.image.trim() === "") problems.push('missing "image" (a path)');
      if (o.requirement !== undefined && o.requirement !== null && typeof o.requirement !== "string")
        problems.push('"requirement" must be a string when present');
      if (problems.length) {
        issues.push({ line, reason: problems.join("; ") });
        return;
      }
      const image = o.image as string;
      const row: EditDatasetRow = {
        line,
        key: `${basename(path)}:${line}`,
        instruction: o.prompt as string,
        imagePath: isAbsolute(image) ? image : resolve(dir, image),
        sourceKey: isAbsolute(image) ? image : relative(dir, resolve(dir, image)),
      };
      if (typeof o.requirement === "string") row.requirement = o.requirement;
      rows.push(row);
    });

    const decodeAll = options.decodeAll ?? true;
    const concurrency = Math.max(1, options.concurrency ?? 4);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < rows.length) {
        const row = rows[next++]!;
        try {
          await access(row.imagePath);
          if (decodeAll) await decodeImage(row.imagePath);
          else {
            const { default: sharp } = await import("sharp");
            const meta = await sharp(row.imagePath).metadata();
            if (!meta.width || !meta.height) throw new Error("no image dimensions");
          }
        } catch (e) {
          const msg =
            (e as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : (e as Error).message;
          issues.push({ line: row.line, reason: `image ${row.sourceKey}: ${msg}` });
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    if (rows.length === 0 && issues.length === 0) issues.push({ line: 0, reason: "the file has no rows" });
    if (issues.length) {
      issues.sort((a, b) => a.line - b.line);
      throw new EditDatasetError(path, issues);
    }
    return new EditDataset(path, rows, Math.max(1, options.cacheSize ?? 256));
  }

  groupKey(index: number): string {
    const row = this.row(index);
    return groupKeyOf(row);
  }

  async get(index: number): Promise<EditRequest> {
    const row = this.row(index);
    let image = this.cache.get(index);
    if (!image) {
      image = decodeImage(row.imagePath);
      this.cache.set(index, image);
      if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    }
    const request: EditRequest = {
      key: row.key,
      instruction: row.instruction,
      source: await image,
      sourceKey: row.sourceKey,
    };
    if (row.requirement !== undefined) request.requirement = row.requirement;
    return request;
  }

  private row(index: number): EditDatasetRow {
    const row = this.rows[index];
    if (!row) throw new RangeError(`EditDataset: row index ${index} out of range [0, ${this.rows.length})`);
    return row;
  }
}

/** A PromptSet over requests already in memory (tests, benchmarks, generated worlds). */
export function promptSetFromRequests(requests: readonly EditRequest[]): PromptSet {
  return {
    size: requests.length,
    groupKey: (i) => {
      const r = requests[i];
      if (!r) throw new RangeError(`prompt index ${i} out of range [0, ${requests.length})`);
      return groupKeyOf(r);
    },
    get: async (i) => {
      const r = requests[i];
      if (!r) throw new RangeError(`prompt index ${i} out of range [0, ${requests.length})`);
      return r;
    },
  };
}
