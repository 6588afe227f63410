import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  EulerSampler,
  type RolloutExecutor,
  type StepMetrics,
  ToyFlowPolicy,
  ToyRegionReward,
  train,
} from "@edit-r1/core";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs module shared with the worker process (no types).
import { loadToy, toyPrompts, toySpec } from "../test/toy-world.mjs";
import { RedisUnreachableError } from "./errors.js";
import type { RolloutJobData } from "./job-data.js";
import { QueueRollouts } from "./queue-rollouts.js";
import { parseQueueUrl } from "./queue-url.js";
import { type LocalRedis, startRedisServer } from "./redis-server.js";
import { RolloutWorker } from "./rollout-worker.js";
import { FolderVersionStore } from "./version-store.js";

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "edit-r1-workers-"));
  dirs.push(d);
  return d;
};
const children: ChildProcess[] = [];
let redis: LocalRedis;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await redis?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const config = {
  seed: 5,
  promptsPerBatch: 2,
  groupSize: 4,
  rolloutBatches: 2,
  trainBatchSize: 4,
  optimizer: { lr: 3e-3 },
  checkpointEvery: 1,
  keepCheckpoints: 10,
  sampleGridEvery: 0,
};

let queues = 0;
/** A queue of its own for each test, on the shared redis-server. */
const freshQueue = () => `${redis.url}?queue=test-${process.pid}-${++queues}`;

function progressTo(onLine: (line: string) => void): NodeJS.WritableStream {
  const write = (line: string) => {
    onLine(line);
    return true;
  };
  return { write } as unknown as NodeJS.WritableStream;
}

async function runTraining(options: {
  steps: number;
  seed?: number;
  lag?: number;
  rollouts?: RolloutExecutor;
  outDir?: string;
  resume?: boolean;
  onLine?: (line: string) => void;
}) {
  return train({
    policy: new ToyFlowPolicy(),
    sampler: new EulerSampler(),
    reward: new ToyRegionReward(),
    prompts: toyPrompts,
    outDir: options.outDir ?? tempDir(),
    config: {
      ...config,
      steps: options.steps,
      rolloutLag: options.lag ?? 0,
      seed: options.seed ?? config.seed,
    },
    progress: options.onLine ? progressTo(options.onLine) : null,
    ...(options.rollouts ? { rollouts: options.rollouts } : {}),
    ...(options.resume ? { resume: true } : {}),
  });
}

/** The numbers of a run, without timings and executor counters. */
const numbers = (metrics: StepMetrics[]) => metrics.map(({ time: _t, rollouts: _r, ...rest }) => rest);

async function openRollouts(url: string, extra: { redisTimeoutS?: number; storeDir?: string } = {}) {
  return QueueRollouts.open({
    location: parseQueueUrl(url),
    spec: toySpec,
    store: new FolderVersionStore(extra.storeDir ?? join(tempDir(), "versions")),
    progressEveryS: 3600,
    ...extra,
  });
}

/**
 * A worker in this process. No test here makes one stall (the dead and frozen workers are processes), so its lock
 * is long and no stalled-job check can hand its job out again.
 */
function inProcessWorker(url: string, delayMs = 0, onRollout?: () => void): RolloutWorker {
  return new RolloutWorker({
    location: parseQueueUrl(url),
    load: loadToy(() => {
      onRollout?.();
      return new Promise((r) => setTimeout(r, delayMs));
    }),
    lockDurationMs: 20_000,
    stalledIntervalMs: 5_000,
  });
}

/** A worker process (test/toy-worker.mjs); `lines` collects what it prints. */
async function workerProcess(url: string, delayMs: number) {
  const script = join(import.meta.dirname, "..", "test", "toy-worker.mjs");
  const child = spawn(process.execPath, [script, url, String(delayMs)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  const lines: string[] = [];
  const listeners: ((line: string) => void)[] = [];
  let buffer = "";
  child.stdout!.on("data", (d: Buffer) => {
    buffer += d.toString();
    let nl = buffer.indexOf("\n");
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      lines.push(line);
      for (const l of listeners) l(line);
      nl = buffer.indexOf("\n");
    }
  });
  const waitFor = (prefix: string) =>
    new Promise<void>((resolve) => {
      if (lines.some((l) => l.startsWith(prefix))) return resolve();
      listeners.push((l) => l.startsWith(prefix) && resolve());
    });
  await waitFor("ready");
  return { child, lines, waitFor };
}

let reference: Awaited<ReturnType<typeof runTraining>> | undefined;
/** The in-process run every distributed run must reproduce (4 steps, lag 0). */
async function inProcessReference() {
  reference ??= await runTraining({ steps: 4 });
  return reference;
}

describe("QueueRollouts with rollout workers on a real redis-server", () => {
  it("two workers reproduce in-process training exactly, at lag 0 and at lag 1", async () => {
    for (const lag of [0, 1]) {
      const url = freshQueue();
      const workers = [inProcessWorker(url), inProcessWorker(url)];
      await Promise.all(workers.map((w) => w.ready()));
      const rollouts = await openRollouts(url);
      const here = lag === 0 ? await inProcessReference() : await runTraining({ steps: 4, lag });
      const there = await runTraining({ steps: 4, lag, rollouts });
      await Promise.all(workers.map((w) => w.close()));
      expect(numbers(there.metrics)).toEqual(numbers(here.metrics));
      expect(Array.from(there.params["mlp.0.weight"]!)).toEqual(Array.from(here.params["mlp.0.weight"]!));
      const last = there.metrics.at(-1)!.rollouts!;
      expect(last.workers).toBe(2);
      // Each job ran once and its result was taken once: nothing was handed out again.
      expect(rollouts.stats()).toMatchObject({ completed: 8, stale: 0, resubmitted: 0, retried: 0 });
      expect(workers[0]!.jobsDone + workers[1]!.jobsDone).toBe(8);
      expect(workers[0]!.jobsDone).toBeGreaterThan(0);
      expect(workers[1]!.jobsDone).toBeGreaterThan(0);
    }
  }, 60_000);

  it("a worker serving two runs that share a version store uses each run's own versions", async () => {
    const url = freshQueue();
    const worker = inProcessWorker(url);
    await worker.ready();
    const storeDir = join(tempDir(), "shared-versions");
    await runTraining({ steps: 3, rollouts: await openRollouts(url, { storeDir }) });
    // Another seed: the same version numbers hold other parameters from step 1 on.
    const second = await runTraining({ steps: 3, seed: 6, rollouts: await openRollouts(url, { storeDir }) });
    const here = await runTraining({ steps: 3, seed: 6 });
    await worker.close();
    expect(numbers(second.metrics)).toEqual(numbers(here.metrics));
  }, 60_000);

  it("a worker killed mid-job: its job runs again on the other worker and the run is unchanged", async () => {
    const url = freshQueue();
    const a = await workerProcess(url, 300);
    const b = await workerProcess(url, 300);
    let killed = false;
    a.waitFor("start").then(() => {
      a.child.kill("SIGKILL");
      killed = true;
    });
    const rollouts = await openRollouts(url);
    const run = await runTraining({ steps: 4, rollouts });
    expect(killed).toBe(true);
    expect(a.lines.filter((l) => l.startsWith("done"))).toHaveLength(0);
    expect(b.lines.filter((l) => l.startsWith("done"))).toHaveLength(8);
    expect(rollouts.stats().retried).toBeGreaterThanOrEqual(1);
    expect(numbers(run.metrics)).toEqual(numbers((await inProcessReference()).metrics));
    b.child.kill("SIGTERM");
  }, 60_000);

  it("a frozen worker that wakes after its job ran elsewhere: its late result is refused, the run unchanged", async () => {
    const url = freshQueue();
    const a = await workerProcess(url, 300);
    const b = await workerProcess(url, 300);
    a.waitFor("start").then(() => a.child.kill("SIGSTOP"));
    const rollouts = await openRollouts(url);
    const run = await runTraining({
      steps: 4,
      rollouts,
      onLine: (line) => {
        // Wake it once the trainer has the retried result: it then finishes a job that is no longer its own.
        if (line.startsWith("step 2/")) a.child.kill("SIGCONT");
      },
    });
    await new Promise((r) => setTimeout(r, 700));
    expect(rollouts.stats().retried).toBeGreaterThanOrEqual(1);
    expect(rollouts.stats().completed).toBe(8);
    expect(numbers(run.metrics)).toEqual(numbers((await inProcessReference()).metrics));
    a.child.kill("SIGKILL");
    b.child.kill("SIGKILL");
  }, 60_000);

  it("a result of another trainer session is stale: discarded and counted", async () => {
    const url = freshQueue();
    const worker = inProcessWorker(url);
    await worker.ready();
    const rollouts = await openRollouts(url);
    const loc = parseQueueUrl(url);
    const foreign = new Queue<RolloutJobData>(loc.queue, { connection: { host: loc.host, port: loc.port } });
    let added: Promise<unknown> | undefined;
    const run = await runTraining({
      steps: 4,
      rollouts,
      onLine: (line) => {
        if (!line.startsWith("step 1/")) return;
        const store = join(tempDir(), "foreign");
        added = new FolderVersionStore(store).write(0, new ToyFlowPolicy().initialParameters()).then(() =>
          foreign.add(
            "rollout",
            {
              run: "0ther5e55ion",
              job: {
                step: 1,
                batch: 0,
                promptIndices: [0, 1],
                groupSize: 4,
                noise: { seed: 3, spare: null },
                version: 0,
              },
              spec: toySpec,
              store,
            },
            { jobId: "0ther5e55ion-s1-b0" },
          ),
        );
      },
    });
    await added;
    for (let i = 0; i < 50 && rollouts.stats().stale === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(rollouts.stats().stale).toBe(1);
    expect(numbers(run.metrics)).toEqual(numbers((await inProcessReference()).metrics));
    await foreign.close();
    await worker.close();
  }, 60_000);

  it("Redis unreachable: the run stops with a clear error, checkpoints intact; resumed, it ends as if never stopped", async () => {
    const local = await startRedisServer();
    try {
      const worker = inProcessWorker(local.url, 100);
      await worker.ready();
      const outDir = tempDir();
      let stopped: Promise<void> | undefined;
      const failed = runTraining({
        steps: 4,
        outDir,
        rollouts: await openRollouts(local.url, { redisTimeoutS: 2 }),
        onLine: (line) => {
          if (line.startsWith("step 2/")) stopped = local.stop();
        },
      });
      await expect(failed).rejects.toThrow(RedisUnreachableError);
      await expect(failed).rejects.toThrow(/has not answered .*last checkpoint is intact.*--resume/s);
      await stopped;
      expect(existsSync(join(outDir, "checkpoints", "step-00000002", "trainer-state.json"))).toBe(true);
      expect(existsSync(join(outDir, "checkpoints", "step-00000003"))).toBe(false);

      await local.restart();
      const resumed = await runTraining({
        steps: 4,
        outDir,
        resume: true,
        rollouts: await openRollouts(local.url),
      });
      await worker.close(true);
      expect(resumed.metrics.map((m) => m.step)).toEqual([3, 4]);
      expect(numbers(resumed.metrics)).toEqual(numbers((await inProcessReference()).metrics.slice(2)));
    } finally {
      await local.stop();
    }
  }, 60_000);

  it("Redis restarted empty mid-run: the vanished jobs go out again and the run is unchanged", async () => {
    const local = await startRedisServer();
    try {
      // Restarted from inside a rollout of a later step, so a job is in flight when Redis loses it (restarting
      // on the trainer's "step 1/" line raced the next step's jobs: Redis could be back, empty, before they
      // were added, and nothing vanished).
      let armed = false;
      let restarted: Promise<void> | undefined;
      const restartOnce = () => {
        if (armed && !restarted) restarted = local.restart();
      };
      const workers = [
        inProcessWorker(local.url, 200, restartOnce),
        inProcessWorker(local.url, 200, restartOnce),
      ];
      await Promise.all(workers.map((w) => w.ready()));
      const rollouts = await openRollouts(local.url, { redisTimeoutS: 20 });
      const run = await runTraining({
        steps: 4,
        rollouts,
        onLine: (line) => {
          if (line.startsWith("step 1/")) armed = true;
        },
      });
      await restarted;
      await Promise.all(workers.map((w) => w.close(true)));
      expect(rollouts.stats().resubmitted).toBeGreaterThanOrEqual(1);
      expect(numbers(run.metrics)).toEqual(numbers((await inProcessReference()).metrics));
    } finally {
      await local.stop();
    }
  }, 60_000);

  it("opening fails fast, naming the URL, when no Redis listens there", async () => {
    const local = await startRedisServer();
    await local.stop();
    const t0 = performance.now();
    await expect(openRollouts(`${local.url}?queue=nobody`, { redisTimeoutS: 1 })).rejects.toThrow(
      new RegExp(
        `cannot reach Redis at redis://127\\.0\\.0\\.1:${local.port}/?\\?queue=nobody: .*ECONNREFUSED`,
      ),
    );
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});
