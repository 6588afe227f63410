import { hostname } from "node:os";
import {
  jobRequests,
  type ParamSet,
  type PromptSet,
  runRollout,
  type Sampler,
  type TrainablePolicy,
} from "@edit-r1/core";
import { type Job, Worker } from "bullmq";
import { encodeResult, type PolicySpec, type RolloutJobData, type RolloutResultData } from "./job-data.js";
import { connectionOptions, type QueueLocation } from "./queue-url.js";
import { openVersionStore } from "./version-store.js";

/** What a worker builds from a job's PolicySpec, once per distinct spec. */
export interface LoadedRolloutPolicy {
  policy: TrainablePolicy;
  sampler: Sampler;
  prompts: PromptSet;
}

export interface RolloutWorkerOptions {
  location: QueueLocation;
  load(spec: PolicySpec): Promise<LoadedRolloutPolicy>;
  /** Where the version store is from here (a mounted folder or a URL), instead of the location jobs carry. */
  store?: string;
  /** A name for logs and the trainer's count of workers (default host:pid). */
  name?: string;
  /**
   * Milliseconds a job's lock lasts without renewal (default 30 000). A worker renews it every half of this
   * while it works, so only a dead or frozen worker loses it; its job then runs again elsewhere.
   */
  lockDurationMs?: number;
  /** How often this worker looks for jobs whose worker died (default: lockDurationMs). */
  stalledIntervalMs?: number;
  log?: (line: string) => void;
}

const KEEP_VERSIONS = 4;

/**
 * `edit-r1 worker`'s engine: takes rollout jobs from the queue one at a time, rebuilds the trainer's policy
 * from the job's spec (cached), reads the old-policy version the job names from the version store (cached),
 * rolls out with core's `runRollout` (the same code the trainer runs in-process, so results match) and
 * returns latents and images.
 */
export class RolloutWorker {
  readonly name: string;
  private readonly worker: Worker<RolloutJobData, RolloutResultData>;
  private readonly policies = new Map<string, Promise<LoadedRolloutPolicy>>();
  private readonly versions = new Map<string, Promise<ParamSet>>();
  jobsDone = 0;

  constructor(private readonly options: RolloutWorkerOptions) {
    this.name = options.name ?? `${hostname()}:${process.pid}`;
    const lockDuration = options.lockDurationMs ?? 30_000;
    this.worker = new Worker<RolloutJobData, RolloutResultData>(
      options.location.queue,
      (job) => this.process(job),
      {
        connection: connectionOptions(options.location, { maxRetriesPerRequest: null }),
        concurrency: 1,
        lockDuration,
        stalledInterval: options.stalledIntervalMs ?? lockDuration,
        // A job whose workers keep dying (out of memory, say) fails after a few tries instead of looping.
        maxStalledCount: 3,
        // An idle worker looks for jobs at least every second: when jobs arrive in a burst, a waiting worker may
        // not be woken for each, and would otherwise notice the rest only after BullMQ's 5 s default.
        drainDelay: 1,
        name: this.name,
      },
    );
    this.worker.on("error", (err) => options.log?.(`worker ${this.name}: ${err.message}`));
    this.worker.on("failed", (job, err) =>
      options.log?.(`worker ${this.name}: job ${job?.id} failed: ${err.message}`),
    );
  }

  /** Resolves once connected to Redis and taking jobs. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /** Stops taking jobs; the job in hand finishes first unless `force`. */
  async close(force = false): Promise<void> {
    await this.worker.close(force);
  }

  private async process(job: Job<RolloutJobData, RolloutResultData>): Promise<RolloutResultData> {
    const t0 = performance.now();
    const { spec, job: rollout } = job.data;
    const loaded = await this.policyFor(spec);
    const params = await this.versionFor(job.data.run, this.options.store ?? job.data.store, rollout.version);
    const loadedRequests = await Promise.all(rollout.promptIndices.map((i) => loaded.prompts.get(i)));
    const requests = jobRequests(rollout, (i) => loadedRequests[rollout.promptIndices.indexOf(i)]!);
    const batch = await runRollout(loaded.policy, loaded.sampler, requests, rollout.noise, params);
    const seconds = (performance.now() - t0) / 1000;
    this.jobsDone++;
    this.options.log?.(
      `worker ${this.name}: step ${rollout.step} batch ${rollout.batch}: ${requests.length} rollouts ` +
        `(version ${rollout.version}) in ${seconds.toFixed(2)} s`,
    );
    return encodeResult(job.data, batch, this.name, seconds);
  }

  private policyFor(spec: PolicySpec): Promise<LoadedRolloutPolicy> {
    const key = JSON.stringify(spec);
    let p = this.policies.get(key);
    if (!p) {
      p = this.options.load(spec);
      p.catch(() => this.policies.delete(key));
      this.policies.set(key, p);
    }
    return p;
  }

  private versionFor(run: string, store: string, version: number): Promise<ParamSet> {
    // Keyed by the trainer session too: another run writing to the same store reuses version numbers.
    const key = `${run}#${store}#${version}`;
    let p = this.versions.get(key);
    if (!p) {
      p = openVersionStore(store).read(version);
      p.catch(() => this.versions.delete(key));
      this.versions.set(key, p);
      // Versions only move forward; the oldest cached ones go.
      while (this.versions.size > KEEP_VERSIONS) this.versions.delete(this.versions.keys().next().value!);
    }
    return p;
  }
}
