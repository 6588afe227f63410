/**
 * The per-item record of a benchmark run (`items.jsonl`), kept so an interrupted run resumes where it
 * stopped. Every update rewrites the whole file atomically (temporary file, fsync, rename), so a crash
 * leaves the previous complete version, never a torn line; writes are serialised and coalesced, so a
 * burst of finished items costs one rewrite, not one each.
 */
import { existsSync } from "node:fs";
import { writeFileAtomic } from "@edit-r1/engine";
import { readJsonlFile } from "@edit-r1/hub";

export class ItemJournal<R extends { key: string }> {
  private readonly records = new Map<string, R>();
  private writing: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;

  private constructor(readonly path: string) {}

  /** Opens the journal at `path`, reading the records of an earlier run if the file exists. */
  static async open<R extends { key: string }>(path: string): Promise<ItemJournal<R>> {
    const journal = new ItemJournal<R>(path);
    if (existsSync(path)) {
      for (const record of await readJsonlFile<R>(path)) journal.records.set(record.key, record);
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
