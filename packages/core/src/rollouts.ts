import { cloneParams, type ParamSet } from "./params.js";
import { Rng, type RngState } from "./rng.js";
import type { TrainablePolicy } from "./trainable-policy.js";
import type { EditRequest, RgbImage, Sampler } from "./types.js";

/**
 * One rollout batch, described completely by small numbers: which prompts (m of them, each repeated K times),
 * the rollout noise (the generator's state before it was drawn) and the old-policy version whose velocity the
 * sampler integrates. Anyone holding the data set, the policy and that version computes the same batch, which
 * is what lets the batch run in another process or on another machine.
 */
export interface RolloutJob {
  /** The optimizer step (0-based: completed steps when it trains) whose update uses this batch. */
  step: number;
  /** Which of the step's rollout batches. */
  batch: number;
  /** Indices into the prompt set, one per group. */
  promptIndices: number[];
  /** Samples per prompt (K); the batch's requests are each prompt repeated K times, in order. */
  groupSize: number;
  /** The rollout generator's state before this batch's noise was drawn. */
  noise: RngState;
  /**
   * The old policy's version: how many optimizer steps it had seen when this batch was handed out. Equal to
   * `step` when rollouts never lag; `step - version` is how far this batch is off-policy.
   */
  version: number;
}

/** What a rollout batch gives back: clean latents (B × D), the sigmas it integrated over, decoded images. */
export interface RolloutBatch {
  x0: Float32Array;
  sigmas: number[];
  images: RgbImage[];
}

/**
 * Where the trainer's rollouts run. The trainer hands out jobs in order and may hand out those of later steps
 * (up to its `rolloutLag`) before the current step has trained; each job names the old-policy version it
 * must use, published before the job. `InProcessRollouts` runs them here, one at a time; a queue of workers
 * (`@edit-r1/workers`) runs them elsewhere.
 */
export interface RolloutExecutor {
  readonly name: string;
  /** Makes the old policy after `version` optimizer steps available to jobs of that version. */
  publishVersion(version: number, params: ParamSet): Promise<void>;
  /** Versions below this one are no longer needed by any job the trainer will wait for. */
  releaseVersionsBefore(version: number): Promise<void>;
  /** Runs one batch. `requests` are the job's requests, already loaded (an executor may load its own). */
  run(job: RolloutJob, requests: readonly EditRequest[]): Promise<RolloutBatch>;
  /** Counters for the metrics line (workers alive, retried or stale jobs, …); absent for in-process. */
  stats?(): Record<string, number>;
  /** One line for the progress output (e.g. "2 workers alive · 1 job waiting · 3.1 rollouts/s"). */
  describe?(): string;
  close?(): Promise<void>;
}

/** The requests of a job: each prompt's request repeated groupSize times. */
export function jobRequests(job: RolloutJob, requestOf: (index: number) => EditRequest): EditRequest[] {
  return job.promptIndices.flatMap((p) => Array<EditRequest>(job.groupSize).fill(requestOf(p)));
}

/**
 * Rolls out one batch: encode the conditions, draw the job's noise, integrate the velocity under `params` from
 * noise to clean latents, decode. The one definition of a rollout, used in-process and by workers alike, so a
 * job gives the same numbers wherever it runs.
 */
export async function runRollout(
  policy: TrainablePolicy,
  sampler: Sampler,
  requests: readonly EditRequest[],
  noise: RngState,
  params: ParamSet,
): Promise<RolloutBatch> {
  await policy.prepare?.(requests);
  const sigmas = policy.sigmas(requests);
  const dim = policy.latentSize(requests[0]!);
  const values = Rng.fromState(noise).normals(requests.length * dim);
  const { x0 } = await sampler.sample(values, sigmas, policy.velocity(requests, params));
  const images = await policy.decode(x0, requests);
  return { x0, sigmas, images };
}

/**
 * Rollouts in this process, one job at a time in the order they were handed out (so a batch's scoring overlaps
 * the next batch's rollout, and jobs handed out ahead wait their turn). Each version is kept as a copy until
 * released, so a job handed out ahead uses the version it names, as on a worker.
 */
export class InProcessRollouts implements RolloutExecutor {
  readonly name = "in-process";
  private readonly versions = new Map<number, ParamSet>();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly policy: TrainablePolicy,
    private readonly sampler: Sampler,
  ) {}

  async publishVersion(version: number, params: ParamSet): Promise<void> {
    this.versions.set(version, cloneParams(params));
  }

  async releaseVersionsBefore(version: number): Promise<void> {
    for (const v of [...this.versions.keys()]) if (v < version) this.versions.delete(v);
  }

  run(job: RolloutJob, requests: readonly EditRequest[]): Promise<RolloutBatch> {
    const params = this.versions.get(job.version);
    if (!params)
      return Promise.reject(new Error(`in-process rollouts: version ${job.version} was never published`));
    // The pause lets the trainer start scoring the previous batch before this one takes the cores.
    const result = this.chain
      .then(() => new Promise((resolve) => setImmediate(resolve)))
      .then(() => runRollout(this.policy, this.sampler, requests, job.noise, params));
    this.chain = result.catch(() => {});
    return result;
  }
}
