import { access, readFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, relative, resolve } from "node:path";
import { EditR1Error } from "./errors.js";
import { groupKeyOf } from "./group-stats.js";
import { decodeImage, ImageTooLargeError, MAX_IMAGE_PIXELS } from "./image-io.js";
import type { EditRequest, RgbImage } from "./types.js";

/** One problem with one line of an Edit-R1 JSONL file. */
export interface DatasetIssue {
  /** 1-based line number. */
  line: number;
  reason: string;
}

/** The data set failed validation; `issues` lists every bad line, not only the first. */
export class EditDatasetError extends EditR1Error {
  /** `problem` replaces the list of lines when the whole file is the problem (unreadable, no rows). */
  constructor(
    readonly file: string,
    readonly issues: readonly DatasetIssue[],
    problem?: string,
  ) {
    const shown = issues.slice(0, 50).map((i) => `  line ${i.line}: ${i.reason}`);
    if (issues.length > 50) shown.push(`  … and ${issues.length - 50} more`);
    super(
      problem !== undefined
        ? `${file}: ${problem}`
        : `${file}: ${issues.length} bad line${issues.length === 1 ? "" : "s"}; fix them and run again ` +
            `(${LINE_FORMAT}):\n${shown.join("\n")}`,
    );
  }
}

const LINE_FORMAT =
  'each line is {"prompt": string, "image": path relative to the file, "requirement"?: string}';

/**
 * The keys of a JSON object's top level, in order, duplicates kept (JSON.parse keeps only the last of a
 * duplicated key). `text` must be valid JSON.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (/\s/.test(text[k] ?? "")) k++;
        if (text[k] === ":") keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      }
      i = j;
    }
  }
  return keys;
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
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === "ENOENT"
          ? "it does not exist"
          : code === "EISDIR"
            ? "it is a folder; pass the JSONL file inside it"
            : code === "EACCES" || code === "EPERM"
              ? "permission denied"
              : (e as Error).message;
      throw new EditDatasetError(path, [], `cannot read the file (${why})`);
    }
    const issues: DatasetIssue[] = [];
    const rows: EditDatasetRow[] = [];
    const dir = dirname(path);
    /** The first line of each group key (prompt + image): two rows of one group would be one prompt. */
    const firstOfGroup = new Map<string, number>();
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
      const keys = topLevelKeys(raw);
      const repeated = [...new Set(keys.filter((k, at) => keys.indexOf(k) !== at))];
      if (repeated.length)
        problems.push(
          `key ${repeated.map((k) => JSON.stringify(k)).join(", ")} appears more than once in the object ` +
            "(JSON keeps only the last); keep one",
        );
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
      const group = groupKeyOf({ instruction: row.instruction, key: row.key, sourceKey: row.sourceKey });
      const first = firstOfGroup.get(group);
      if (first !== undefined) {
        issues.push({
          line,
          reason:
            `same prompt and image as line ${first} (rollouts are grouped by prompt and image, so the two ` +
            "rows would be one prompt drawn twice as often); remove one of the two lines",
        });
        return;
      }
      firstOfGroup.set(group, line);
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
            if (meta.width * meta.height > MAX_IMAGE_PIXELS)
              throw new ImageTooLargeError(meta.width, meta.height, MAX_IMAGE_PIXELS);
          }
        } catch (e) {
          const msg =
            (e as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : (e as Error).message;
          issues.push({ line: row.line, reason: `image ${row.sourceKey}: ${msg}` });
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    if (rows.length === 0 && issues.length === 0)
      throw new EditDatasetError(
        path,
        [],
        `the file has no rows (${text.trim() === "" ? "it is empty" : "only blank lines"}); ${LINE_FORMAT}. ` +
          "Pass an Edit-R1 JSONL with at least one edit (e.g. train_metadata.jsonl)",
      );
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
