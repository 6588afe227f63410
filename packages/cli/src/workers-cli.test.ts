import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalRedis, startRedisServer } from "@edit-r1/workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

const bin = join(import.meta.dirname, "..", "dist", "bin.js");
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "edit-r1-workers-cli-"));
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

/** `edit-r1 worker` as its own process; resolves once it takes jobs. `lines` is its stderr. */
async function startWorker(args: string[]) {
  const child = spawn(process.execPath, [bin, "worker", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  const lines: string[] = [];
  const waiters: [string, () => void][] = [];
  let partial = "";
  child.stderr!.on("data", (d: Buffer) => {
    const parts = (partial + d.toString()).split("\n");
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      for (const [text, resolve] of waiters) if (line.includes(text)) resolve();
    }
  });
  /** Resolves at a line holding `text` (with `fresh`, only at one printed from now on). */
  const waitFor = (text: string, { fresh = false } = {}) =>
    new Promise<void>((resolve, reject) => {
      if (!fresh && lines.some((l) => l.includes(text))) return resolve();
      waiters.push([text, resolve]);
      child.once("exit", (code) =>
        reject(new Error(`worker exited (${code}) before "${text}":\n${lines.join("\n")}`)),
      );
    });
  await waitFor("taking rollout jobs");
  return { child, lines, waitFor };
}

/** A run's metrics without timings and the rollout executor's counters. */
function numbers(outDir: string): unknown[] {
  return readFileSync(join(outDir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => {
      const { time: _t, rollouts: _r, ...rest } = JSON.parse(l);
      return rest;
    });
}

const trainArgs = ["train", "--steps", "2", "--no-bench", "--seed", "3"];

describe("edit-r1 train --workers and edit-r1 worker (tiny adapter, real redis-server)", () => {
  it("two worker processes reproduce the in-process run; killing one mid-run changes nothing", async () => {
    const queue = `${redis.url}?queue=cli-equal`;
    const a = await startWorker([
      "--queue",
      queue,
      "--adapter",
      "tiny",
      "--name",
      "a",
      "--lock-seconds",
      "2",
    ]);
    const b = await startWorker([
      "--queue",
      queue,
      "--adapter",
      "tiny",
      "--name",
      "b",
      "--lock-seconds",
      "2",
    ]);

    const here = tempDir();
    expect(await main([...trainArgs, "--out", here], capture().io)).toBe(0);

    const there = tempDir();
    const run = capture();
    expect(await main([...trainArgs, "--out", there, "--workers", queue], run.io)).toBe(0);
    expect(run.err.join("\n")).toMatch(
      /rollouts: on workers at redis:\/\/127\.0\.0\.1:\d+\/?\?queue=cli-equal/,
    );
    expect(run.err.join("\n")).toMatch(/step 2\/2 .*\[2 workers alive · .* rollouts\/s/);
    expect(numbers(there)).toEqual(numbers(here));
    // Every job (tiny: one rollout batch a step) ran on one of the two workers; which one is up to the queue.
    const jobsDone = (lines: string[]) =>
      lines.filter((l) => /worker \w: step \d batch \d: \d+ rollouts/.test(l));
    expect(jobsDone(a.lines).length + jobsDone(b.lines).length).toBe(2);

    // Again with a alone, killed as it starts its first job of the run (it loads that run's policy first); a
    // worker started after that runs the job once a's lock has run out.
    const bExited = new Promise((r) => b.child.once("exit", r));
    b.child.kill("SIGTERM");
    await bExited;
    const killed = tempDir();
    const loading = a.waitFor("worker: loading", { fresh: true });
    const running = main([...trainArgs, "--out", killed, "--workers", queue], capture().io);
    await loading;
    a.child.kill("SIGKILL");
    const c = await startWorker([
      "--queue",
      queue,
      "--adapter",
      "tiny",
      "--name",
      "c",
      "--lock-seconds",
      "2",
    ]);
    expect(await running).toBe(0);
    expect(numbers(killed)).toEqual(numbers(here));
    expect(jobsDone(a.lines.slice(-1))).toHaveLength(0);
    expect(c.lines.filter((l) => /worker c: step 0 batch 0/.test(l))).toHaveLength(1);
    c.child.kill("SIGTERM");
  }, 240_000);

  it("a job for another adapter fails on the worker with a message naming both, and the run stops with it", async () => {
    const queue = `${redis.url}?queue=cli-wrong`;
    await startWorker(["--queue", queue, "--adapter", "flux-kontext"]);
    const run = capture();
    const code = await main([...trainArgs, "--steps", "1", "--out", tempDir(), "--workers", queue], run.io);
    expect(code).toBe(1);
    expect(run.err.join("\n")).toMatch(
      /failed on the workers after 3 attempts: this worker runs adapter flux-kontext, the job is for tiny; start a worker with --adapter tiny/,
    );
  }, 120_000);

  it("bad queue URLs and flags are usage errors naming the flag", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["train", "--workers", "http://127.0.0.1:6379"],
        /--workers http:\/\/127\.0\.0\.1:6379: the scheme must be redis:\/\//,
      ],
      [["train", "--workers", "redis://127.0.0.1:6379/x"], /the path must be a database number/],
      [["train", "--store", "/tmp/x"], /--store .* needs --workers/],
      [["train", "--rollout-lag", "-1"], /--rollout-lag must be an integer ≥ 0/],
      [["worker", "--adapter", "tiny"], /--queue is required/],
      [["worker", "--queue", "redis://127.0.0.1:1"], /--adapter is required/],
      [["worker", "--queue", "redis://h?queue=a b", "--adapter", "tiny"], /queue names are letters/],
    ];
    for (const [args, message] of cases) {
      const run = capture();
      expect(await main(args, run.io), args.join(" ")).toBe(2);
      expect(run.err.join("\n")).toMatch(message);
    }
  });
});
