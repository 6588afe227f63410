// Rollout throughput of `edit-r1 worker` processes on the tiny adapter: the same rollout jobs (the tiny
// adapter's prompts, K = 8, 4 prompts a job) run in this process (the baseline, as `edit-r1 train` without
// --workers does), then on 1 and on 2 worker processes fed through a redis-server on loopback. Each figure is
// rollouts per second; the ratios are against the in-process rate and 1 worker, measured in the same run.
// On a 2-core machine two CPU workers share the cores, so 2 workers cannot double 1; on GPUs each worker
// has its own device. Runs against dist (build first); needs redis-server (scripts/ensure-redis.mjs).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { adapter } from "@edit-r1/adapter-tiny";
import { EditDataset, jobRequests, Rng, runRollout, samplerByName } from "@edit-r1/core";
import { FolderVersionStore, parseQueueUrl, QueueRollouts, startRedisServer } from "@edit-r1/workers";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../..");
const bin = path.join(here, "..", "dist", "bin.js");
const JOBS = Number(process.env.PERF_JOBS ?? 12);
const PROMPTS_PER_JOB = 4;
const K = 8;
const ROUNDS = Number(process.env.PERF_ROUNDS ?? 2);

const work = mkdtempSync(path.join(tmpdir(), "edit-r1-perf-workers-"));
const dataPath = await adapter.trainDefaults.writeTrainData(path.join(work, "data"));
const prompts = await EditDataset.load(dataPath);
const policy = await adapter.loadPolicy({});
const sampler = samplerByName(adapter.trainDefaults.sampler ?? "dpm2");
const params = policy.initialParameters();
const store = new FolderVersionStore(path.join(work, "versions"));
await store.write(0, params);

let batchNo = 0;
/** `JOBS` fresh jobs (new prompts and noise each time, as training draws them). */
function makeJobs() {
  const rng = new Rng(1000 + batchNo++);
  return Array.from({ length: JOBS }, (_, b) => ({
    step: batchNo,
    batch: b,
    promptIndices: rng.permutation(prompts.size).slice(0, PROMPTS_PER_JOB),
    groupSize: K,
    noise: { seed: 7 + b + 100 * batchNo, spare: null },
    version: 0,
  }));
}
async function requestsOf(job) {
  const loaded = await Promise.all(job.promptIndices.map((i) => prompts.get(i)));
  return jobRequests(job, (i) => loaded[job.promptIndices.indexOf(i)]);
}

async function inProcess() {
  const jobs = makeJobs();
  const t = performance.now();
  for (const job of jobs) await runRollout(policy, sampler, await requestsOf(job), job.noise, params);
  return (JOBS * PROMPTS_PER_JOB * K) / ((performance.now() - t) / 1000);
}

function startWorkers(url, n) {
  return Promise.all(
    Array.from({ length: n }, (_, i) => {
      const child = spawn(
        process.execPath,
        [bin, "worker", "--queue", url, "--adapter", "tiny", "--name", `w${i}`],
        {
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      return new Promise((resolve, reject) => {
        let text = "";
        child.stderr.on("data", (d) => {
          text += d;
          if (text.includes("taking rollout jobs")) resolve(child);
        });
        child.once("exit", (code) => reject(new Error(`worker exited ${code}:\n${text}`)));
      });
    }),
  );
}

async function onWorkers(redis, n) {
  const url = `${redis.url}?queue=perf-${n}`;
  const children = await startWorkers(url, n);
  const rollouts = await QueueRollouts.open({
    location: parseQueueUrl(url),
    spec: { adapter: "tiny", options: {}, sampler: adapter.trainDefaults.sampler ?? "dpm2", data: dataPath },
    store,
  });
  const runAll = async () => {
    const jobs = makeJobs();
    const t = performance.now();
    await Promise.all(jobs.map(async (job) => rollouts.run(job, await requestsOf(job))));
    return (JOBS * PROMPTS_PER_JOB * K) / ((performance.now() - t) / 1000);
  };
  await runAll(); // warm-up: each worker loads the policy on its first job
  const rates = [];
  for (let r = 0; r < ROUNDS; r++) rates.push(await runAll());
  await rollouts.close();
  for (const c of children) c.kill("SIGTERM");
  return Math.max(...rates);
}

const redis = await startRedisServer();
try {
  await inProcess(); // warm-up
  const rates = { inProcess: [], workers1: [], workers2: [] };
  // Alternating rounds; each variant's best round counts (the least disturbed by the rest of the machine).
  for (let r = 0; r < ROUNDS; r++) {
    rates.inProcess.push(await inProcess());
    rates.workers1.push(await onWorkers(redis, 1));
    rates.workers2.push(await onWorkers(redis, 2));
  }
  const best = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, Math.max(...v)]));
  const result = {
    setup: {
      jobs: JOBS,
      rolloutsPerJob: PROMPTS_PER_JOB * K,
      rounds: ROUNDS,
      cores: (await import("node:os")).cpus().length,
    },
    rolloutsPerS: Object.fromEntries(Object.entries(best).map(([k, v]) => [k, Number(v.toFixed(2))])),
    ratios: {
      oneWorkerVsInProcess: Number((best.workers1 / best.inProcess).toFixed(3)),
      twoWorkersVsOne: Number((best.workers2 / best.workers1).toFixed(3)),
    },
  };
  const out = path.join(repoRoot, ".perf");
  mkdirSync(out, { recursive: true });
  writeFileSync(
    path.join(out, "cli-workers-throughput.json"),
    `${JSON.stringify({ name: "workers-throughput", date: new Date().toISOString(), ...result }, null, 2)}\n`,
  );
  console.log(JSON.stringify(result, null, 2));
  console.log("→ .perf/cli-workers-throughput.json");
} finally {
  await redis.stop();
  rmSync(work, { recursive: true, force: true });
  const { closeDefaultRuntime } = await import("@edit-r1/engine");
  await closeDefaultRuntime();
}
