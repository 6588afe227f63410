import { randomBytes } from "node:crypto";
import type { EditRequest, ParamSet, RolloutBatch, RolloutExecutor, RolloutJob } from "@edit-r1/core";
import { Queue, QueueEvents } from "bullmq";
import { RedisUnreachableError, RolloutJobError } from "./errors.js";
import {
  decodeResult,
  jobId,
  type PolicySpec,
  type RolloutJobData,
  type RolloutResultData,
} from "./job-data.js";
import { connectionOptions, type QueueLocation } from "./queue-url.js";
import type { VersionStore } from "./version-store.js";

export interface QueueRolloutsOptions {
  location: QueueLocation;
  spec: PolicySpec;
  store: VersionStore;
  /** Seconds a job may take from hand-out to result before the run stops (default 3600). */
  jobTimeoutS?: number;
  /** Seconds Redis may stay unreachable before the run stops (default 30). */
  redisTimeoutS?: number;
  /** Attempts per job on the workers before it fails the run (default 3). */
  attempts?: number;
  /** Seconds between progress lines while waiting for results (default 15). */
  progressEveryS?: number;
  log?: (line: string) => void;
}

const POLL_MS = 1000;

function seconds(): number {
  return performance.now() / 1000;
}

/**
 * The trainer's side of scale-out: each rollout job goes onto a BullMQ queue on Redis, `edit-r1 worker`
 * processes take them, and this waits for their results.
 *
 * What it guarantees: a job id names the trainer session, step and batch, so adding it twice is a no-op and
 * a result is taken once (duplicates are idempotent). A worker that dies mid-job stops renewing its lock;
 * another worker's stalled-job check puts the job back and it runs again (counted as `retried`). A result of
 * another trainer session, or of a version the job did not name, is discarded and counted (`stale`). A job
 * that vanished (Redis restarted empty) is handed out again (`resubmitted`). Redis unreachable for
 * `redisTimeoutS` stops the run with RedisUnreachableError; the last checkpoint is intact, so `--resume`
 * loses nothing.
 */
export class QueueRollouts implements RolloutExecutor {
  readonly name: string;
  /** This trainer session; results of other sessions are stale. */
  readonly runId = randomBytes(6).toString("hex");
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly awaited = new Map<string, () => void>();
  /** Jobs whose result was taken; their late 'completed' events are not stale. */
  private readonly taken = new Set<string>();
  private readonly counters = { retried: 0, stale: 0, resubmitted: 0, completed: 0 };
  private workersAlive = 0;
  private jobCounts: Record<string, number> = {};
  private samplesDone = 0;
  private readonly openedAt = seconds();
  private unreachableSince: number | null = null;
  private lastProblem = "";
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(private readonly options: QueueRolloutsOptions) {
    const { location } = options;
    this.name = `workers at ${location.display}`;
    // Commands fail fast while Redis is away (instead of queueing forever); the wait loop retries them. The
    // connection gives up reconnecting a little after the run would stop anyway, so nothing keeps retrying
    // (and keeps the process alive) after the run has stopped.
    const attempts = Math.ceil(((options.redisTimeoutS ?? 30) + 5) / 0.5);
    const retryStrategy = (times: number) => (times > attempts ? null : 500);
    const connection = connectionOptions(location, { maxRetriesPerRequest: 1, retryStrategy });
    this.queue = new Queue(location.queue, {
      connection,
      // Results travel in the job, not in the events stream; keep the stream short.
      streams: { events: { maxLen: 1000 } },
    });
    this.events = new QueueEvents(location.queue, {
      connection: connectionOptions(location, { retryStrategy }),
    });
    const noteError = (err: Error) => {
      this.lastProblem = err.message;
    };
    this.queue.on("error", noteError);
    this.events.on("error", noteError);
    this.events.on("completed", ({ jobId: id }) => this.onFinished(id));
    this.events.on("failed", ({ jobId: id }) => this.awaited.get(id)?.());
    this.events.on("stalled", ({ jobId: id }) => {
      if (id.startsWith(`${this.runId}-`)) this.counters.retried++;
    });
    this.timer = setInterval(() => void this.refresh(), 2000);
    this.timer.unref();
  }

  /**
   * Connects (failing with RedisUnreachableError when Redis does not answer within `redisTimeoutS`) and
   * drains jobs an earlier trainer left waiting on this queue (one trainer per queue).
   */
  static async open(options: QueueRolloutsOptions): Promise<QueueRollouts> {
    const q = new QueueRollouts(options);
    const limit = options.redisTimeoutS ?? 30;
    const started = seconds();
    for (;;) {
      try {
        await withTimeout(q.queue.getJobCounts("waiting"), Math.min(5000, limit * 1000));
        await q.events.waitUntilReady();
        break;
      } catch (err) {
        if (seconds() - started > limit) {
          await q.close();
          const { display } = options.location;
          throw new RedisUnreachableError(
            `cannot reach Redis at ${display}: ${q.lastProblem || (err as Error).message || err}. ` +
              "Start redis-server there (or any Redis/Valkey ≥ 6.2), or fix the URL; nothing was trained.",
          );
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    await q.queue.drain();
    await q.refresh();
    return q;
  }

  async publishVersion(version: number, params: ParamSet): Promise<void> {
    await this.options.store.write(version, params);
  }

  async releaseVersionsBefore(version: number): Promise<void> {
    await this.options.store.prune(version);
  }

  async run(job: RolloutJob, requests: readonly EditRequest[]): Promise<RolloutBatch> {
    const id = jobId(this.runId, job);
    const data: RolloutJobData = {
      run: this.runId,
      job,
      spec: this.options.spec,
      store: this.options.store.location,
    };
    const where = `rollout job ${id} (step ${job.step}, batch ${job.batch})`;
    let wake: () => void = () => {};
    this.awaited.set(id, () => wake());
    try {
      await this.redis(() => this.add(id, data), where);
      const timeoutS = this.options.jobTimeoutS ?? 3600;
      const progressEveryS = this.options.progressEveryS ?? 15;
      const started = seconds();
      let lastProgress = started;
      for (;;) {
        const batch = await this.redis(() => this.take(id, data, where), where);
        if (batch) {
          if (batch.images.length !== requests.length)
            throw new RolloutJobError(
              `${where}: ${batch.images.length} images for ${requests.length} requests`,
            );
          this.samplesDone += batch.images.length;
          return batch;
        }
        const waited = seconds() - started;
        if (waited > timeoutS)
          throw new RolloutJobError(
            `${where}: no result after ${Math.round(waited)} s (${this.workersAlive} workers alive). ` +
              "Start workers with `edit-r1 worker --queue …`, or raise the job timeout; the last checkpoint is intact.",
          );
        if (seconds() - lastProgress >= progressEveryS) {
          lastProgress = seconds();
          this.options.log?.(
            `rollouts: waiting for step ${job.step} batch ${job.batch} (${Math.round(waited)} s) · ${this.describe()}`,
          );
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, POLL_MS);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    } finally {
      this.awaited.delete(id);
    }
  }

  stats(): Record<string, number> {
    return {
      workers: this.workersAlive,
      waiting: this.jobCounts.waiting ?? 0,
      active: this.jobCounts.active ?? 0,
      ...this.counters,
      samplesPerS: Number((this.samplesDone / Math.max(1e-9, seconds() - this.openedAt)).toFixed(3)),
    };
  }

  /** One line for progress output: workers alive, jobs pending, throughput. */
  describe(): string {
    const s = this.stats();
    return (
      `${s.workers} workers alive · ${s.waiting} jobs waiting, ${s.active} running · ${s.samplesPerS} rollouts/s` +
      (s.retried || s.resubmitted || s.stale
        ? ` · retried ${s.retried}, resubmitted ${s.resubmitted}, stale ${s.stale}`
        : "")
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    // A graceful close waits for Redis; when it is gone, drop the connections instead.
    const graceful = Promise.allSettled([this.events.close(), this.queue.close()]);
    await withTimeout(graceful, 3000).catch(() => {
      // Not awaited: it waits for a connection that may never come; the connection stops retrying by itself.
      void Promise.allSettled([this.events.disconnect(), this.queue.disconnect()]);
    });
  }

  private async add(id: string, data: RolloutJobData): Promise<void> {
    await this.queue.add("rollout", data, {
      jobId: id,
      attempts: this.options.attempts ?? 3,
      backoff: { type: "fixed", delay: 1000 },
      removeOnComplete: false,
      removeOnFail: { age: 24 * 3600 },
    });
  }

  /** The job's batch when it has finished; undefined while it runs; an error when it failed for good. */
  private async take(id: string, data: RolloutJobData, where: string): Promise<RolloutBatch | undefined> {
    // The state first, then the job: a job read while it runs and found completed a moment later would carry no
    // return value (it was read before the worker wrote it), and its result would look lost.
    const state = await this.queue.getJobState(id);
    const job = state === "unknown" ? undefined : await this.queue.getJob(id);
    if (!job) {
      // Gone while we waited for it: Redis restarted without its data. Hand it out again.
      this.counters.resubmitted++;
      this.options.log?.(
        `rollouts: ${where} vanished from the queue (Redis restarted?); handing it out again`,
      );
      await this.add(id, data);
      return undefined;
    }
    if (state === "failed")
      throw new RolloutJobError(
        `${where} failed on the workers after ${job.attemptsMade} attempts: ${job.failedReason}. ` +
          "The last checkpoint is intact; fix the cause (the worker's log says more) and resume with --resume.",
      );
    if (state !== "completed") return undefined;
    const result = job.returnvalue as RolloutResultData;
    await job.remove().catch(() => {});
    if (!result || result.run !== data.run || result.version !== data.job.version) {
      // Cannot happen with one trainer per queue; counted, and the job runs again.
      this.counters.stale++;
      await this.add(id, data);
      return undefined;
    }
    this.counters.completed++;
    this.taken.add(id);
    return decodeResult(result, where);
  }

  /** A finished job nobody here waits for: another session's, or one already taken. */
  private onFinished(id: string): void {
    const wake = this.awaited.get(id);
    if (wake) {
      wake();
      return;
    }
    if (this.taken.has(id)) return;
    this.counters.stale++;
    void this.queue.remove(id).catch(() => {});
  }

  /** Runs a Redis operation; while Redis is away, returns undefined until `redisTimeoutS` runs out. */
  private async redis<T>(op: () => Promise<T>, where: string): Promise<T | undefined> {
    try {
      const value = await withTimeout(op(), 10_000);
      this.unreachableSince = null;
      return value;
    } catch (err) {
      if (err instanceof RolloutJobError) throw err;
      const now = seconds();
      this.unreachableSince ??= now;
      const limit = this.options.redisTimeoutS ?? 30;
      if (now - this.unreachableSince > limit)
        throw this.unreachable(`${(err as Error).message || err} (${where})`, now - this.unreachableSince);
      return undefined;
    }
  }

  private unreachable(problem: string, forS: number): RedisUnreachableError {
    const { location } = this.options;
    return new RedisUnreachableError(
      `Redis at ${location.display} has not answered for ${Math.round(forS)} s: ${this.lastProblem || problem}. ` +
        "The run stopped; its last checkpoint is intact. Start Redis (and the workers), then continue with --resume.",
    );
  }

  private async refresh(): Promise<void> {
    try {
      this.workersAlive = await withTimeout(this.queue.getWorkersCount(), 5000);
      this.jobCounts = await withTimeout(this.queue.getJobCounts("waiting", "active", "delayed"), 5000);
    } catch {
      // Reported by the wait loop when it matters.
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer in ${ms / 1000} s`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
