import {
  accessSync,
  appendFileSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { EditR1Error } from "./errors.js";

const CHECKPOINT_DIR = /^step-(\d{8})$/;

/**
 * An output folder, or a file or folder a run keeps in it, cannot be used; the message says which path, what
 * is wrong with it in words (not errno codes) and what to do.
 */
export class OutputFolderError extends EditR1Error {
  override readonly name = "OutputFolderError";
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** Names inside an output folder that must be files, and names that must be folders, where they exist. */
export interface OutputLayout {
  files?: readonly string[];
  folders?: readonly string[];
}

/** What a training run keeps in its folder (RunDirectory writes these). */
export const RUN_LAYOUT: Required<OutputLayout> = {
  files: ["metrics.jsonl", "report.html"],
  folders: ["checkpoints", "samples"],
};

/** A file-system failure in words: what errno code `err` carries, as a reader would say it. */
export function fsProblem(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case "EISDIR":
      return "it is a folder, not a file";
    case "ENOTDIR":
      return "a part of its path is a file, not a folder";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ENOSPC":
      return "the disk is full";
    case "EDQUOT":
      return "the disk quota is used up";
    case "EROFS":
      return "the file system is read-only";
    case "ENOENT":
      return "it does not exist";
    case "EEXIST":
      return "something else is already there";
    case "EMFILE":
    case "ENFILE":
      return "too many files are open";
    case "ENAMETOOLONG":
      return "the path is too long";
    default:
      return e?.message ?? String(err);
  }
}

function statOf(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    // ENOENT, or ENOTDIR when a parent is a file: either way nothing is at `path`.
    return undefined;
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks, writing nothing, that `root` can be an output folder: it is a folder or can be created as one, it
 * is writable, and every name of `layout` that already exists in it has the right kind (a file where the run
 * writes a file, a folder where it keeps a folder). Throws an OutputFolderError in words.
 */
export function checkOutputFolder(root: string, layout: OutputLayout = {}): void {
  const info = statOf(root);
  if (info && !info.isDirectory())
    throw new OutputFolderError(root, `${root} is a file; choose a folder (a new one, or an earlier run's)`);
  if (!info) {
    let parent = dirname(resolve(root));
    while (!statOf(parent) && dirname(parent) !== parent) parent = dirname(parent);
    if (!statOf(parent)?.isDirectory())
      throw new OutputFolderError(
        root,
        `${root} cannot be created: ${parent} is a file, not a folder; choose a folder elsewhere`,
      );
    if (!writable(parent))
      throw new OutputFolderError(
        root,
        `${root} cannot be created: ${parent} is not writable (permission denied); choose a folder you can write to`,
      );
    return;
  }
  if (!writable(root))
    throw new OutputFolderError(
      root,
      `${root} is not writable (permission denied); choose a folder you can write to`,
    );
  for (const name of layout.files ?? []) {
    const path = join(root, name);
    if (statOf(path)?.isDirectory())
      throw new OutputFolderError(
        path,
        `${path} is a folder, but the run writes a file there; move it aside or choose another folder`,
      );
  }
  for (const name of layout.folders ?? []) {
    const path = join(root, name);
    const s = statOf(path);
    if (s && !s.isDirectory())
      throw new OutputFolderError(
        path,
        `${path} is a file, but the run keeps a folder there; move it aside or choose another folder`,
      );
  }
}

/** Runs a file-system write, turning its errno into an OutputFolderError saying what could not be done. */
function attempt<T>(path: string, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof OutputFolderError) throw new OutputFolderError(e.path, `${what}: ${e.message}`);
    throw new OutputFolderError(path, `${what}: ${fsProblem(e)} (${path})`);
  }
}

/**
 * A training run's folder: `metrics.jsonl`, `report.html`, `samples/` and `checkpoints/step-NNNNNNNN/`.
 * A checkpoint is written into a hidden temporary folder and renamed into place, so a `step-*` folder
 * is always complete and a crash never damages the last good one.
 */
export class RunDirectory {
  readonly root: string;
  /** Checks the folder's layout (RUN_LAYOUT) and creates it; an unusable folder is an OutputFolderError. */
  constructor(root: string) {
    checkOutputFolder(root, RUN_LAYOUT);
    this.root = resolve(root);
    attempt(this.root, "cannot create the run folder", () => mkdirSync(this.root, { recursive: true }));
  }

  get metricsPath(): string {
    return join(this.root, "metrics.jsonl");
  }
  get reportPath(): string {
    return join(this.root, "report.html");
  }
  get checkpointsDir(): string {
    return join(this.root, "checkpoints");
  }
  get samplesDir(): string {
    return join(this.root, "samples");
  }

  appendMetrics(record: object): void {
    const path = this.metricsPath;
    attempt(path, "cannot append the step's metrics", () =>
      appendFileSync(path, `${JSON.stringify(record)}\n`),
    );
  }

  readMetrics<T extends { step: number }>(): T[] {
    const path = this.metricsPath;
    if (!existsSync(path)) return [];
    const text = attempt(path, "cannot read the run's metrics", () => readFileSync(path, "utf8"));
    return text
      .split("\n")
      .map((l, i) => [l, i + 1] as const)
      .filter(([l]) => l.trim() !== "")
      .map(([l, line]) => {
        try {
          return JSON.parse(l) as T;
        } catch (e) {
          throw new OutputFolderError(
            path,
            `${path}:${line} is not a JSON line (${(e as Error).message}); fix or delete that line, or move the file aside`,
          );
        }
      });
  }

  /** Drops metric lines after `step` (written after the checkpoint a run resumes from). */
  truncateMetrics(step: number): void {
    if (!existsSync(this.metricsPath)) return;
    const kept = this.readMetrics().filter((m) => m.step <= step);
    const tmp = `${this.metricsPath}.tmp`;
    attempt(this.metricsPath, "cannot rewrite the run's metrics", () => {
      writeFileSync(tmp, kept.map((m) => `${JSON.stringify(m)}\n`).join(""));
      renameSync(tmp, this.metricsPath);
    });
  }

  /** Writes a file atomically (temporary file + rename). */
  writeFileAtomic(path: string, data: Uint8Array | string): void {
    const tmp = `${path}.tmp-${process.pid}`;
    attempt(path, "cannot write", () => {
      writeFileSync(tmp, data);
      renameSync(tmp, path);
    });
  }

  writeCheckpoint(step: number, files: Record<string, Uint8Array | string>): string {
    const name = `step-${String(step).padStart(8, "0")}`;
    const final = join(this.checkpointsDir, name);
    const tmp = join(this.checkpointsDir, `.tmp-${name}-${process.pid}`);
    attempt(final, `cannot write the checkpoint of step ${step} (the earlier checkpoints are intact)`, () => {
      checkOutputFolder(this.root, { folders: ["checkpoints"] });
      mkdirSync(this.checkpointsDir, { recursive: true });
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      try {
        for (const [file, data] of Object.entries(files)) writeFileSync(join(tmp, file), data);
      } catch (e) {
        // A full disk leaves no half-written temporary folder behind.
        rmSync(tmp, { recursive: true, force: true });
        throw e;
      }
      // Re-saving a step (after a resume) replaces it; the old copy goes only once the new one is complete.
      if (existsSync(final)) {
        const old = join(this.checkpointsDir, `.old-${name}-${process.pid}`);
        renameSync(final, old);
        renameSync(tmp, final);
        rmSync(old, { recursive: true, force: true });
      } else renameSync(tmp, final);
    });
    return final;
  }

  /** Steps of the complete checkpoints, ascending. */
  checkpointSteps(): number[] {
    if (!existsSync(this.checkpointsDir)) return [];
    return readdirSync(this.checkpointsDir)
      .map((n) => CHECKPOINT_DIR.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  latestCheckpoint(): { step: number; dir: string } | null {
    const steps = this.checkpointSteps();
    const step = steps[steps.length - 1];
    return step === undefined ? null : { step, dir: this.checkpointDir(step) };
  }

  checkpointDir(step: number): string {
    return join(this.checkpointsDir, `step-${String(step).padStart(8, "0")}`);
  }

  /** Keeps the newest `keep` checkpoints. */
  pruneCheckpoints(keep: number): void {
    const steps = this.checkpointSteps();
    for (const step of steps.slice(0, Math.max(0, steps.length - keep)))
      rmSync(this.checkpointDir(step), { recursive: true, force: true });
  }
}
