import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";

const CHECKPOINT_DIR = /^step-(\d{8})$/;

/**
 * A training run's folder: `metrics.jsonl`, `report.html`, `samples/` and `checkpoints/step-NNNNNNNN/`.
 * A checkpoint is written into a hidden temporary folder and renamed into place, so a `step-*` folder
 * is always complete and a crash never damages the last good one.
 */
export class RunDirectory {
  readonly root: string;
  constructor(root: string) {
    this.root = resolve(root);
    mkdirSync(this.root, { recursive: true });
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
    appendFileSync(this.metricsPath, `${JSON.stringify(record)}\n`);
  }

  readMetrics<T extends { step: number }>(): T[] {
    if (!existsSync(this.metricsPath)) return [];
    return readFileSync(this.metricsPath, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as T);
  }

  /** Drops metric lines after `step` (written after the checkpoint a run resumes from). */
  truncateMetrics(step: number): void {
    if (!existsSync(this.metricsPath)) return;
    const kept = this.readMetrics().filter((m) => m.step <= step);
    const tmp = `${this.metricsPath}.tmp`;
    writeFileSync(tmp, kept.map((m) => `${JSON.stringify(m)}\n`).join(""));
    renameSync(tmp, this.metricsPath);
  }

  /** Writes a file atomically (temporary file + rename). */
  writeFileAtomic(path: string, data: Uint8Array | string): void {
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  }

  writeCheckpoint(step: number, files: Record<string, Uint8Array | string>): string {
    mkdirSync(this.checkpointsDir, { recursive: true });
    const name = `step-${String(step).padStart(8, "0")}`;
    const final = join(this.checkpointsDir, name);
    const tmp = join(this.checkpointsDir, `.tmp-${name}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    for (const [file, data] of Object.entries(files)) writeFileSync(join(tmp, file), data);
    // Re-saving a step (after a resume) replaces it; the old copy goes only once the new one is complete.
    if (existsSync(final)) {
      const old = join(this.checkpointsDir, `.old-${name}-${process.pid}`);
      renameSync(final, old);
      renameSync(tmp, final);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, final);
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
