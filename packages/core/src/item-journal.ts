/**
 * The per-item record of a benchmark run (`items.jsonl`), kept so an interrupted run resumes where it
 * stopped. Every update rewrites the whole file atomically (temporary file, fsync, rename), so a crash
 * leaves the previous complete version, never a torn line; writes are serialised and coalesced, so a
 * burst of finished items costs one rewrite, not one each.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "@edit-r1/engine";
import { RunFileError } from "./errors.js";

export class ItemJournal<R extends { key: string }> {
  private readonly records = new Map<string, R>();
  private writing: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;

  private constructor(readonly path: string) {}

  /** Opens the journal at `path`, reading the records of an earlier run if the file exists. */
  static async open<R extends { key: string }>(path: string): Promise<ItemJournal<R>> {
    const journal = new ItemJournal<R>(path);
    if (existsSync(path)) {
      for (const record of await readJsonLines<R>(path)) journal.records.set(record.key, record);
    }
    return journal;
  }

  get(key: string): R | undefined {
    return this.records.get(key);
  }

  /** Stores a record (replacing any earlier one for its key) and resolves once it is on disk. */
  put(record: R): Promise<void> {
    this.records.set(record.key, record);
    // A write that has not started yet will include this record too.
    if (this.queued) return this.queued;
    const next = this.writing.then(() => {
      this.queued = undefined;
      const text = [...this.records.values()].map((r) => `${JSON.stringify(r)}\n`).join("");
      return writeFileAtomic(this.path, text);
    });
    this.queued = next;
    this.writing = next.catch(() => {});
    return next;
  }
}

/**
 * The records of a JSON Lines file (BOM and blank lines skipped). Core reads it itself rather than
 * through @edit-r1/hub, which it does not depend on; journals are small, so reading whole is fine.
 */
async function readJsonLines<R>(path: string): Promise<R[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new RunFileError(path, `cannot read (${(cause as Error).message})`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const records: R[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (line.trim() === "") continue;
    try {
      records.push(JSON.parse(line) as R);
    } catch (cause) {
      throw new RunFileError(path, `invalid JSON on this line (${(cause as Error).message})`, i + 1);
    }
  }
  return records;
}
