import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { EditR1Error } from "./errors.js";

/** A file could not be written; whatever was at the path before is still there, unchanged. */
export class AtomicWriteError extends EditR1Error {
  override readonly name = "AtomicWriteError";
  readonly path: string;

  constructor(path: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      `Could not write ${path}: ${reason}. Any previous file at that path is untouched; check the folder exists, is writable and has free space.`,
      { cause },
    );
    this.path = path;
  }
}

export type AtomicWriteData = string | ArrayBufferView | readonly ArrayBufferView[];

export interface AtomicWriteOptions {
  /** Create missing parent folders first (default true). */
  makeDirs?: boolean;
  /** Permission bits of a newly created file (default 0o644, before the umask). */
  mode?: number;
}

// fs writes are capped near 2 GiB per call; stay well below.
const MAX_CHUNK = 1 << 30;

/**
 * Writes a file so that readers see either the old content or the complete new content, never a
 * torn file: the data goes to a temporary file in the same folder (same filesystem, so the rename
 * is atomic), is flushed to disk, and is then renamed over the target.
 */
export async function writeFileAtomic(
  path: string,
  data: AtomicWriteData,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let handle: FileHandle | undefined;
  try {
    if (options.makeDirs ?? true) await mkdir(dir, { recursive: true });
    handle = await open(temp, "wx", options.mode ?? 0o644);
    for (const part of toParts(data)) {
      for (let done = 0; done < part.length; ) {
        const { bytesWritten } = await handle.write(part, done, Math.min(part.length - done, MAX_CHUNK));
        done += bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
  } catch (cause) {
    await handle?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw new AtomicWriteError(path, cause);
  }
  await syncDirectory(dir);
}

function toParts(data: AtomicWriteData): Uint8Array[] {
  if (typeof data === "string") return [Buffer.from(data, "utf8")];
  const views = ArrayBuffer.isView(data) ? [data] : (data as readonly ArrayBufferView[]);
  return views.map((v) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
}

/** Makes the rename itself durable. Not every platform can fsync a folder (Windows cannot), so failure is ignored. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close().catch(() => {});
  }
}
