import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AdamW, type AdamWSettings, DEFAULT_ADAMW } from "./adamw.js";
import { emaDecay as emaDecayAt, oldPolicyDecay } from "./decay.js";
import type { DeviceTrainingState } from "./device-training.js";
import type { PromptSet } from "./edit-dataset.js";
import { Ema } from "./ema.js";
import { ConfigError, EditR1Error } from "./errors.js";
import {
  DEFAULT_GROUP_FILTER,
  type GroupFilterSettings,
  type GroupStatistics,
  groupStatistics,
} from "./group-stats.js";
import { imageGridPng } from "./image-io.js";
import { DEFAULT_NFT_SETTINGS, type NftSettings } from "./nft-loss.js";
import {
  accumulate,
  assertSameLayout,
  clipGradNorm,
  cloneParams,
  type ParamSet,
  softUpdate,
  zerosLike,
} from "./params.js";
import { type GalleryItem, renderReport } from "./report.js";
import { Rng, type RngState } from "./rng.js";
import {
  InProcessRollouts,
  jobRequests,
  type RolloutBatch,
  type RolloutExecutor,
  type RolloutJob,
} from "./rollouts.js";
import { fsProblem, OutputFolderError, RunDirectory } from "./run-directory.js";
import { decodeSafetensorsF32, encodeSafetensorsF32 } from "./safetensors-f32.js";
import type { NftBatch, NftStepResult, TrainablePolicy } from "./trainable-policy.js";
import type { EditRequest, Reward, RewardInput, RewardOutput, RgbImage, Sampler } from "./types.js";

export interface TrainConfig {
  /** Optimizer steps to reach (a resumed run continues up to this total). */
  steps: number;
  seed: number;
  /** Distinct prompts (groups) drawn per rollout batch (m). */
  promptsPerBatch: number;
  /** Images per prompt (K). */
  groupSize: number;
  /** Rollout batches per optimizer step; rewards of one are scored while the next rolls out. */
  rolloutBatches: number;
  /** Samples per gradient micro-batch. */
  trainBatchSize: number;
  /**
   * How many optimizer steps a rollout may lag behind (off-policy tolerance). 0: each step's rollouts use the
   * old policy of that step, as in one process. L > 0: the rollouts of step s + L are handed out when step s
   * starts, with the old policy of then, so rollout workers never wait for the trainer. The run's numbers
   * depend on it, not on where the rollouts run.
   */
  rolloutLag: number;
  /** Share of the sampler's sigmas each sample trains on: int(n · fraction), at least 1. */
  timestepFraction: number;
  /**
   * How the training pass draws each sample's timesteps and forward-process noise. "group": the members of a
   * group share them (common random numbers). A group's advantages sum to zero, so the part of the
   * flow-matching gradient that all members share cancels and what is left is what their images differ in;
   * the per-sample draws of "sample" (the reference implementation's) add that shared part back as noise.
   */
  trainNoise: "group" | "sample";
  nft: NftSettings;
  /** Low-variance group filter; `enabled: false` trains every group. */
  filter: GroupFilterSettings & { enabled: boolean; banPrompts: boolean };
  optimizer: AdamWSettings;
  maxGradNorm: number;
  /** Old-policy soft-update schedule (decay type of oldPolicyDecay). */
  decayType: 0 | 1 | 2;
  emaMaxDecay: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  /** Write a PNG grid of rollout images every this many steps (0: never). */
  sampleGridEvery: number;
}

/** The paper's settings (Edit-R1, one process standing in for 48 GPUs' worth of batches). */
export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  steps: 100,
  seed: 42,
  promptsPerBatch: 12,
  groupSize: 12,
  rolloutBatches: 2,
  trainBatchSize: 3,
  rolloutLag: 0,
  timestepFraction: 0.99,
  trainNoise: "group",
  nft: DEFAULT_NFT_SETTINGS,
  filter: { ...DEFAULT_GROUP_FILTER, enabled: true, banPrompts: true },
  optimizer: DEFAULT_ADAMW,
  maxGradNorm: 1,
  decayType: 1,
  emaMaxDecay: 0.9,
  checkpointEvery: 10,
  keepCheckpoints: 2,
  sampleGridEvery: 10,
};

export type TrainConfigInput = Partial<Omit<TrainConfig, "nft" | "filter" | "optimizer">> & {
  nft?: Partial<NftSettings>;
  filter?: Partial<TrainConfig["filter"]>;
  optimizer?: Partial<AdamWSettings>;
};

export function resolveTrainConfig(input: TrainConfigInput = {}): TrainConfig {
  const d = DEFAULT_TRAIN_CONFIG;
  const c: TrainConfig = {
    ...d,
    ...input,
    nft: { ...d.nft, ...input.nft },
    filter: { ...d.filter, ...input.filter },
    optimizer: { ...d.optimizer, ...input.optimizer },
  };
  const positiveInts: (keyof TrainConfig)[] = [
    "promptsPerBatch",
    "groupSize",
    "rolloutBatches",
    "trainBatchSize",
    "checkpointEvery",
    "keepCheckpoints",
  ];
  for (const k of positiveInts) {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v < 1)
      throw new ConfigError(`train config ${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(c.rolloutLag) || c.rolloutLag < 0)
    throw new ConfigError(`train config rolloutLag must be a non-negative integer, got ${c.rolloutLag}`);
  if (!Number.isInteger(c.steps) || c.steps < 0)
    throw new ConfigError(`train config steps must be a non-negative integer, got ${c.steps}`);
  if (!Number.isInteger(c.sampleGridEvery) || c.sampleGridEvery < 0)
    throw new ConfigError(
      `train config sampleGridEvery must be a non-negative integer, got ${c.sampleGridEvery}`,
    );
  if (!(c.timestepFraction > 0 && c.timestepFraction <= 1))
    throw new ConfigError(`train config timestepFraction must lie in (0, 1], got ${c.timestepFraction}`);
  if (c.trainNoise !== "group" && c.trainNoise !== "sample")
    throw new ConfigError(
      `train config trainNoise must be "group" or "sample", got ${JSON.stringify(c.trainNoise)}`,
    );
  if (!(c.maxGradNorm > 0))
    throw new ConfigError(`train config maxGradNorm must be positive, got ${c.maxGradNorm}`);
  return c;
}

/** Everything logged for one optimizer step (one line of metrics.jsonl). */
export interface StepMetrics {
  step: number;
  samples: number;
  rewardMean: number;
  rewardStd: number;
  rewardMin: number;
  rewardMax: number;
  rewardComponents: Record<string, number>;
  groupCount: number;
  filteredFraction: number;
  /** Samples the training passes ran on (the unfiltered ones). */
  trainedSamples: number;
  newlyBanned: number;
  bannedTotal: number;
  loss: number;
  policyLoss: number;
  klLoss: number;
  gradNorm: number;
  oldPolicyEta: number;
  emaDecay: number;
  lr: number;
  /** How many optimizer steps behind the oldest rollout of this step was (0 unless rolloutLag > 0). */
  rolloutLag: number;
  /** The rollout executor's counters (workers alive, jobs retried, stale results discarded, …), when it has any. */
  rollouts?: Record<string, number>;
  /** Seconds: rollouts, waiting for rewards after the last rollout, training, the whole step (checkpoint excluded). */
  time: { rolloutS: number; rewardWaitS: number; trainS: number; stepS: number };
}

/** A reward or a loss went non-finite; the run stopped and the last good checkpoint is untouched. */
export class TrainingDivergedError extends EditR1Error {
  constructor(
    readonly step: number,
    readonly reason: string,
    readonly lastCheckpoint: string | null,
  ) {
    super(
      `training stopped at step ${step}: ${reason}. ` +
        (lastCheckpoint
          ? `The last good checkpoint is ${lastCheckpoint}; resume from it with a lower learning rate or a fixed reward.`
          : "No checkpoint was written yet; check the reward and the learning rate, then start again."),
    );
  }
}

/** Not enough unbanned prompts remain to draw a rollout batch. */
export class PromptsExhaustedError extends EditR1Error {}

export interface TrainOptions {
  policy: TrainablePolicy;
  sampler: Sampler;
  reward: Reward;
  prompts: PromptSet;
  outDir: string;
  config?: TrainConfigInput;
  /** Continue from the newest checkpoint in outDir (a fresh start when there is none). */
  resume?: boolean;
  /** Where the progress line goes; stderr by default, null for silence. */
  progress?: NodeJS.WritableStream | null;
  signal?: AbortSignal;
  /** Where rollouts run; in this process (`InProcessRollouts`) by default. The trainer closes it at the end. */
  rollouts?: RolloutExecutor;
}

export interface TrainResult {
  run: RunDirectory;
  /** Metrics of the steps run by this call. */
  metrics: StepMetrics[];
  params: ParamSet;
  oldParams: ParamSet;
  emaParams: ParamSet;
  step: number;
  /** The EMA weights as a loadable LoRA folder, when the policy can export one. */
  loraDir?: string;
}

/** Exports into a temporary sibling folder and swaps it in, so a crash never leaves a half-written LoRA. */
async function exportLoraAtomically(policy: TrainablePolicy, params: ParamSet, dir: string): Promise<string> {
  const tmp = `${dir}.tmp-${process.pid}`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await policy.exportLora!(params, tmp);
    const old = `${dir}.old-${process.pid}`;
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    if (typeof (e as NodeJS.ErrnoException).code !== "string") throw e;
    throw new OutputFolderError(dir, `cannot write the LoRA: ${fsProblem(e)} (${dir})`);
  }
  return dir;
}

interface TrainerState {
  format: 1;
  step: number;
  policy: string;
  configFingerprint: string;
  adamStep: number;
  rng: { prompts: RngState; rollout: RngState; train: RngState };
  banned: string[];
  /**
   * Rollout jobs handed out ahead (rolloutLag > 0) but not yet trained on; their old-policy versions are in
   * rollout-versions.safetensors. A resume hands them out again, so nothing drawn is lost or drawn twice.
   */
  pendingRollouts?: RolloutJob[];
  /** The step's metrics line, appended after the checkpoint; a resume restores it if the append never happened. */
  metrics?: StepMetrics;
}

/** Settings whose change would make a resumed run differ from an uninterrupted one. */
function fingerprint(c: TrainConfig): string {
  const { steps: _s, checkpointEvery: _c, keepCheckpoints: _k, sampleGridEvery: _g, rolloutLag, ...rest } = c;
  // rolloutLag came later; leaving 0 out keeps checkpoints written before it resumable.
  return JSON.stringify(rolloutLag === 0 ? rest : { ...rest, rolloutLag });
}

function prefixed(prefix: string, set: ParamSet): ParamSet {
  return Object.fromEntries(Object.entries(set).map(([k, v]) => [`${prefix}${k}`, v]));
}

function unprefixed(prefix: string, set: ParamSet): ParamSet {
  return Object.fromEntries(
    Object.entries(set)
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => [k.slice(prefix.length), v]),
  );
}

function meanStd(values: readonly number[]): [number, number] {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return [mean, Math.sqrt(values.reduce((a, b) => a + (b - mean) * (b - mean), 0) / values.length)];
}

function now(): number {
  return performance.now() / 1000;
}

/** A rollout job handed out and not yet trained on. */
interface HandedOut {
  job: RolloutJob;
  requests: EditRequest[];
  result: Promise<RolloutBatch>;
  /** The trainer's own encoding of the conditions, when the rollout runs elsewhere (training needs them). */
  prepared: Promise<void> | undefined;
}

interface RolloutSample {
  promptIndex: number;
  request: EditRequest;
  x0: Float32Array;
  sigmas: number[];
  image: RgbImage;
}

/** One step's scored rollouts and their group statistics. */
interface ScoredRollouts {
  samples: RolloutSample[];
  outputs: RewardOutput[];
  rewards: number[];
  stats: GroupStatistics;
  validMask: Uint8Array;
  newlyBanned: number;
  rolloutLag: number;
  rolloutS: number;
  rewardWaitS: number;
}

/** The loss terms and clipped gradient norm of one optimizer step. */
interface TrainedStep {
  trainedSamples: number;
  loss: number;
  policyLoss: number;
  klLoss: number;
  gradNorm: number;
  emaDecay: number;
  oldPolicyEta: number;
  trainS: number;
}

/**
 * Runs DiffusionNFT training (Edit-R1's loop): draw prompts in groups, roll out with the old policy,
 * score (overlapping the next rollout), group statistics and filtering, NFT loss over the sampler's own
 * sigmas with gradient accumulation, AdamW with clipping, old-policy and EMA updates, metrics,
 * atomic checkpoints and exact resume. Each phase is one method of `TrainingRun`.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const run = new TrainingRun(options);
  const metrics: StepMetrics[] = [];
  try {
    await run.restore();
    while (run.step < run.config.steps) {
      options.signal?.throwIfAborted();
      const tStep = now();
      const scored = await run.rolloutAndScore();
      const trained = await run.trainOnSamples(scored);
      metrics.push(await run.recordStep(scored, trained, now() - tStep));
    }
    await run.syncFromDevice();
  } finally {
    await run.rollouts.close?.();
    await run.releaseDevice();
  }
  run.writeReport();
  const loraDir = options.policy.exportLora
    ? await exportLoraAtomically(options.policy, run.ema.params, join(run.dir.root, "lora"))
    : undefined;
  return {
    run: run.dir,
    metrics,
    params: run.params,
    oldParams: run.oldParams,
    emaParams: run.ema.params,
    step: run.step,
    loraDir,
  };
}

/** The state of one training run and its phases: restore, rollout and score, train, record. */
class TrainingRun {
  readonly config: TrainConfig;
  readonly dir: RunDirectory;
  params: ParamSet;
  readonly oldParams: ParamSet;
  readonly ema: Ema;
  step = 0;
  private readonly adam: AdamW;
  private rngPrompts: Rng;
  private rngRollout: Rng;
  private rngTrain: Rng;
  private readonly banned = new Set<string>();
  private lastCheckpoint: string | null = null;
  private readonly progress: NodeJS.WritableStream | null;
  readonly rollouts: RolloutExecutor;
  /** Jobs handed out, by the step that trains on them. */
  private readonly handedOut = new Map<number, HandedOut[]>();
  private readonly published = new Set<number>();
  /** Copies of the versions that jobs handed out ahead still name (rolloutLag > 0 only), for checkpoints. */
  private readonly versionCopies = new Map<number, ParamSet>();
  /** The policy's device-resident training state (null until asked for, undefined when it offers none). */
  private deviceState: DeviceTrainingState | undefined | null = null;
  /** AdamW's step count on the device. */
  private deviceAdamStep = 0;
  /** Whether params, EMA and AdamW's moments here are behind the device's (θ_old is read back every step). */
  private hostBehind = false;

  constructor(private readonly options: TrainOptions) {
    this.config = resolveTrainConfig(options.config);
    this.dir = new RunDirectory(options.outDir);
    this.progress = options.progress === undefined ? process.stderr : options.progress;
    this.params = options.policy.initialParameters();
    this.oldParams = cloneParams(this.params);
    this.ema = new Ema(this.params, this.config.emaMaxDecay);
    this.adam = new AdamW(this.params, this.config.optimizer);
    this.rngPrompts = Rng.derive(this.config.seed, "prompts");
    this.rngRollout = Rng.derive(this.config.seed, "rollout");
    this.rngTrain = Rng.derive(this.config.seed, "train");
    this.rollouts = options.rollouts ?? new InProcessRollouts(options.policy, options.sampler);
  }

  /** Continues from the newest checkpoint when resuming; refuses to overwrite one otherwise. */
  async restore(): Promise<void> {
    const { config, dir: run } = this;
    const latest = run.latestCheckpoint();
    if (latest && !this.options.resume)
      throw new ConfigError(
        `${run.root} already holds checkpoints (newest: step ${latest.step}); resume it (\`resume: true\`, ` +
          "`edit-r1 train --resume`) or choose another output folder",
      );
    if (!(latest && this.options.resume)) {
      if (existsSync(run.metricsPath)) run.truncateMetrics(0);
      return;
    }
    const state = JSON.parse(readFileSync(join(latest.dir, "trainer-state.json"), "utf8")) as TrainerState;
    if (state.configFingerprint !== fingerprint(config))
      throw new ConfigError(
        `cannot resume ${latest.dir}: the training settings differ from the checkpoint's (only steps, checkpointEvery, keepCheckpoints and sampleGridEvery may change). Checkpoint: ${state.configFingerprint}`,
      );
    const load = (file: string): ParamSet =>
      decodeSafetensorsF32(readFileSync(join(latest.dir, file)), join(latest.dir, file)).tensors;
    const loaded = load("model.safetensors");
    assertSameLayout(this.params, loaded, `checkpoint ${latest.dir} (policy ${state.policy})`);
    this.params = loaded;
    const old = load("model-old.safetensors");
    assertSameLayout(this.oldParams, old, `checkpoint ${latest.dir} old policy`);
    for (const k of Object.keys(this.oldParams)) this.oldParams[k]!.set(old[k]!);
    this.ema.load(load("model-ema.safetensors"));
    const moments = load("optimizer.safetensors");
    this.adam.loadState({
      step: state.adamStep,
      settings: config.optimizer,
      m: unprefixed("m.", moments),
      v: unprefixed("v.", moments),
    });
    this.rngPrompts = Rng.fromState(state.rng.prompts);
    this.rngRollout = Rng.fromState(state.rng.rollout);
    this.rngTrain = Rng.fromState(state.rng.train);
    for (const b of state.banned) this.banned.add(b);
    this.step = state.step;
    run.truncateMetrics(this.step);
    // A stop between the checkpoint and its metrics line leaves the line missing; the checkpoint holds it.
    if (state.metrics && !run.readMetrics().some((m) => m.step === state.step))
      run.appendMetrics(state.metrics);
    this.lastCheckpoint = latest.dir;
    // Jobs handed out ahead of the checkpoint go out again, with the versions they were handed out with.
    if (state.pendingRollouts?.length) {
      const versions = load("rollout-versions.safetensors");
      for (const job of state.pendingRollouts) {
        if (!this.published.has(job.version)) {
          const params = unprefixed(`v${job.version}.`, versions);
          assertSameLayout(this.params, params, `checkpoint ${latest.dir} rollout version ${job.version}`);
          await this.rollouts.publishVersion(job.version, params);
          this.published.add(job.version);
          this.versionCopies.set(job.version, params);
        }
        const requests = await this.jobRequests(job);
        let list = this.handedOut.get(job.step);
        if (!list) this.handedOut.set(job.step, (list = []));
        list.push(this.dispatch(job, requests));
      }
    }
  }

  /** Rollout batches, each one's scoring overlapping the next one's rollout; then group statistics. */
  async rolloutAndScore(): Promise<ScoredRollouts> {
    const { config, options } = this;
    const { reward } = options;
    let rolloutS = 0;
    const samples: RolloutSample[] = [];
    const scoring: Promise<RewardOutput[]>[] = [];
    // Hand out this step's jobs and, with a lag, those of the next steps, all with the current old policy.
    const t0 = now();
    for (let s = this.step; s <= this.step + config.rolloutLag && s < config.steps; s++)
      if (!this.handedOut.has(s)) await this.handOutStep(s);
    const jobs = this.handedOut.get(this.step)!;
    this.handedOut.delete(this.step);
    rolloutS += now() - t0;
    let rolloutLag = 0;
    for (const handed of jobs) {
      const t1 = now();
      const batch = await this.rolloutSamples(handed);
      await handed.prepared;
      rolloutS += now() - t1;
      rolloutLag = Math.max(rolloutLag, this.step - handed.job.version);
      samples.push(...batch);
      const inputs: RewardInput[] = batch.map((s) => ({ ...s.request, edited: s.image }));
      const pending = reward.score(inputs, options.signal ? { signal: options.signal } : undefined);
      pending.catch(() => {}); // awaited below; this only silences the unhandled-rejection warning meanwhile
      scoring.push(pending);
    }
    const pendingVersions = [...this.handedOut.values()].flat().map((h) => h.job.version);
    const oldest = Math.min(this.step + 1, ...pendingVersions);
    await this.rollouts.releaseVersionsBefore(oldest);
    for (const v of this.versionCopies.keys()) if (v < oldest) this.versionCopies.delete(v);
    const t2 = now();
    const outputs = (await Promise.all(scoring)).flat();
    const rewardWaitS = now() - t2;
    if (outputs.length !== samples.length)
      throw new EditR1Error(
        `reward ${reward.name} returned ${outputs.length} scores for ${samples.length} images`,
      );
    const rewards = outputs.map((o) => o.score);
    const bad = rewards.findIndex((r) => !Number.isFinite(r));
    if (bad >= 0)
      this.diverged(
        `reward ${reward.name} gave ${rewards[bad]} for sample ${bad} (prompt ${JSON.stringify(samples[bad]!.request.instruction)})`,
      );

    const keys = samples.map((s) => options.prompts.groupKey(s.promptIndex));
    const stats = groupStatistics(keys, rewards, config.filter);
    const validMask = config.filter.enabled ? stats.validMask : new Uint8Array(samples.length).fill(1);
    let newlyBanned = 0;
    if (config.filter.enabled && config.filter.banPrompts) {
      for (const key of stats.banned) {
        if (!this.banned.has(key)) newlyBanned++;
        this.banned.add(key);
      }
    }
    return { samples, outputs, rewards, stats, validMask, newlyBanned, rolloutLag, rolloutS, rewardWaitS };
  }

  /**
   * The NFT passes over the unfiltered samples, every sample at int(n·fraction) of its sampler's sigmas in its
   * own random order, micro-batches drawn from one resolution bucket; then AdamW, EMA and the old policy.
   */
  async trainOnSamples(scored: ScoredRollouts): Promise<TrainedStep> {
    const { config, options } = this;
    const { samples, stats, validMask } = scored;
    const tTrain = now();
    const n = samples[0]!.sigmas.length - 1;
    if (samples.some((s) => s.sigmas.length - 1 !== n))
      throw new ConfigError("all rollouts of one step must use the same number of sampler steps");
    const numT = Math.max(1, Math.floor(n * config.timestepFraction));
    // Each sample's timestep order and its noise at each trained timestep, drawn once per group or per sample.
    const keys = samples.map((s) => options.prompts.groupKey(s.promptIndex));
    const drawKeys = config.trainNoise === "group" ? keys : samples.map((_, i) => String(i));
    const draws = new Map<string, { timeOrder: number[]; noise: Float32Array[] }>();
    for (let i = 0; i < samples.length; i++) {
      if (draws.has(drawKeys[i]!)) continue;
      const dim = samples[i]!.x0.length;
      const timeOrder = this.rngTrain.permutation(n);
      draws.set(drawKeys[i]!, {
        timeOrder,
        noise: Array.from({ length: numT }, () => this.rngTrain.normals(dim)),
      });
    }
    const drawOf = (s: number) => draws.get(drawKeys[s]!)!;
    // A masked sample's loss and gradient are exactly zero (as in the reference, which still runs it), so
    // the filtered groups are left out of the passes altogether.
    const order = this.rngTrain.permutation(samples.length).filter((s) => validMask[s] === 1);
    const microBatches = this.microBatches(order, samples);
    const device = await this.device();
    const grads = device ? undefined : zerosLike(this.params);
    const scale = 1 / (Math.max(1, microBatches.length) * numT);
    let loss = 0;
    let policyLoss = 0;
    let klLoss = 0;
    for (const mb of microBatches) {
      const dim = samples[mb[0]!]!.x0.length;
      const x0 = new Float32Array(mb.length * dim);
      mb.forEach((s, i) => {
        x0.set(samples[s]!.x0, i * dim);
      });
      for (let j = 0; j < numT; j++) {
        const noise = new Float32Array(mb.length * dim);
        mb.forEach((s, i) => {
          noise.set(drawOf(s).noise[j]!, i * dim);
        });
        const batch: NftBatch = {
          requests: mb.map((s) => samples[s]!.request),
          x0,
          noise,
          t: Float64Array.from(mb.map((s) => samples[s]!.sigmas[drawOf(s).timeOrder[j]!]!)),
          advantages: Float64Array.from(mb.map((s) => stats.advantages[s]!)),
          validMask: Uint8Array.from(mb.map((s) => validMask[s]!)),
          settings: config.nft,
        };
        const out = device
          ? await device.accumulate(batch, scale)
          : await options.policy.lossAndGradients(batch, this.params, this.oldParams);
        if (!Number.isFinite(out.loss))
          this.diverged(`the NFT loss is ${out.loss} (policy ${out.policyLoss}, KL ${out.klLoss})`);
        if (grads) accumulate(grads, (out as NftStepResult).gradients, scale);
        loss += out.loss * scale;
        policyLoss += out.policyLoss * scale;
        klLoss += out.klLoss * scale;
      }
    }
    let gradNorm: number;
    let emaDecay: number;
    let oldPolicyEta: number;
    if (device) {
      // The same update on the device: clip, AdamW, EMA, old policy. Only θ_old comes back (rollouts use it).
      emaDecay = emaDecayAt(this.step, this.ema.maxDecay);
      oldPolicyEta = oldPolicyDecay(this.step + 1, config.decayType);
      gradNorm = await device.update({ adamStep: ++this.deviceAdamStep, emaDecay, oldPolicyEta });
      // Checked after the fact, unlike on the host: the device state is then spoilt, but the run stops here
      // and the checkpoints on disk are intact.
      if (!Number.isFinite(gradNorm)) this.diverged(`the gradient norm is ${gradNorm}`);
      this.step++;
      this.hostBehind = true;
      const old = await device.readOldParams();
      for (const [k, v] of Object.entries(old)) this.oldParams[k]!.set(v);
    } else {
      gradNorm = clipGradNorm(grads!, config.maxGradNorm);
      if (!Number.isFinite(gradNorm)) this.diverged(`the gradient norm is ${gradNorm}`);
      this.adam.update(this.params, grads!);
      emaDecay = this.ema.update(this.params, this.step);
      this.step++;
      oldPolicyEta = oldPolicyDecay(this.step, config.decayType);
      softUpdate(this.oldParams, this.params, oldPolicyEta);
    }
    return {
      trainedSamples: order.length,
      loss,
      policyLoss,
      klLoss,
      gradNorm,
      emaDecay,
      oldPolicyEta,
      trainS: now() - tTrain,
    };
  }

  /**
   * Logs the step (sample grid, checkpoint, metrics line, progress). On a checkpoint step the checkpoint (and
   * its LoRA) is written first and the metrics line after it, so a metrics line never names a step whose
   * checkpoint failed; the checkpoint carries the line, so a resume restores it if the append did not happen.
   */
  async recordStep(scored: ScoredRollouts, trained: TrainedStep, stepS: number): Promise<StepMetrics> {
    const { config, step, dir: run } = this;
    const { samples, outputs, rewards, stats } = scored;
    if (config.sampleGridEvery > 0 && (step % config.sampleGridEvery === 0 || step === 1)) {
      mkdirSync(run.samplesDir, { recursive: true });
      const path = join(run.samplesDir, `step-${String(step).padStart(8, "0")}.png`);
      const shown = samples.slice(0, Math.min(samples.length, config.groupSize * 4));
      const small = Math.max(...shown.map((s) => s.image.width)) < 64;
      writeFileSync(
        path,
        await imageGridPng(
          shown.map((s) => s.image),
          { columns: config.groupSize, scale: small ? 8 : 1 },
        ),
      );
    }
    const [rewardMean, rewardStd] = meanStd(rewards);
    const componentNames = [...new Set(outputs.flatMap((o) => Object.keys(o.components)))];
    const rewardComponents: Record<string, number> = {};
    for (const c of componentNames) {
      const vals = outputs.map((o) => o.components[c]).filter((v): v is number => typeof v === "number");
      rewardComponents[c] = vals.reduce((a, b) => a + b, 0) / vals.length;
    }
    const record: StepMetrics = {
      step,
      samples: samples.length,
      trainedSamples: trained.trainedSamples,
      rewardMean,
      rewardStd,
      rewardMin: Math.min(...rewards),
      rewardMax: Math.max(...rewards),
      rewardComponents,
      groupCount: stats.groupCount,
      filteredFraction: config.filter.enabled ? stats.filteredFraction : 0,
      newlyBanned: scored.newlyBanned,
      bannedTotal: this.banned.size,
      loss: trained.loss,
      policyLoss: trained.policyLoss,
      klLoss: trained.klLoss,
      gradNorm: trained.gradNorm,
      oldPolicyEta: trained.oldPolicyEta,
      emaDecay: trained.emaDecay,
      lr: config.optimizer.lr,
      rolloutLag: scored.rolloutLag,
      ...(this.rollouts.stats ? { rollouts: this.rollouts.stats() } : {}),
      time: { rolloutS: scored.rolloutS, rewardWaitS: scored.rewardWaitS, trainS: trained.trainS, stepS },
    };
    if (step % config.checkpointEvery === 0 || step === config.steps) {
      await this.syncFromDevice();
      this.saveCheckpoint(record);
      // Each checkpoint also carries its EMA weights as a loadable LoRA (PEFT files), for bench --lora.
      const { policy } = this.options;
      if (policy.exportLora)
        await exportLoraAtomically(policy, this.ema.params, join(this.lastCheckpoint!, "lora"));
    }
    run.appendMetrics(record);
    this.progress?.write(
      `step ${step}/${config.steps}  reward ${rewardMean.toFixed(4)} ± ${rewardStd.toFixed(4)}  ` +
        `filtered ${(record.filteredFraction * 100).toFixed(0)}%  loss ${trained.loss.toPrecision(4)}  ` +
        `|g| ${trained.gradNorm.toPrecision(3)}  ${stepS.toFixed(2)}s` +
        (this.rollouts.describe ? `  [${this.rollouts.describe()}]` : "") +
        "\n",
    );
    return record;
  }

  /** The policy's device training state, created (and loaded with the state here) on first use. */
  private async device(): Promise<DeviceTrainingState | undefined> {
    if (this.deviceState === null) {
      const { optimizer, maxGradNorm } = this.config;
      const state = this.options.policy.deviceTraining?.(optimizer, maxGradNorm);
      if (state) {
        const adam = this.adam.getState();
        await state.load({
          params: this.params,
          oldParams: this.oldParams,
          ema: this.ema.params,
          m: adam.m,
          v: adam.v,
        });
        this.deviceAdamStep = adam.step;
        this.progress?.write(
          `training state (θ, θ_old, EMA, AdamW moments, gradient sums) stays on ${state.device} between steps\n`,
        );
      }
      this.deviceState = state;
    }
    return this.deviceState;
  }

  /** Brings θ, the EMA and AdamW's moments here up to the device's (before checkpoints and at the end). */
  async syncFromDevice(): Promise<void> {
    if (!this.hostBehind || !this.deviceState) return;
    const state = await this.deviceState.read();
    for (const [k, v] of Object.entries(state.params)) this.params[k]!.set(v);
    for (const [k, v] of Object.entries(state.oldParams)) this.oldParams[k]!.set(v);
    this.ema.load(state.ema);
    this.adam.loadState({
      step: this.deviceAdamStep,
      settings: this.config.optimizer,
      m: state.m,
      v: state.v,
    });
    this.hostBehind = false;
  }

  /** Frees the device training state. */
  async releaseDevice(): Promise<void> {
    const state = this.deviceState;
    this.deviceState = null;
    await state?.dispose();
  }

  saveCheckpoint(metrics?: StepMetrics): void {
    const { policy } = this.options;
    const adamState = this.adam.getState();
    const pending = [...this.handedOut.values()].flat().map((h) => h.job);
    const state: TrainerState = {
      format: 1,
      step: this.step,
      policy: policy.name,
      configFingerprint: fingerprint(this.config),
      adamStep: adamState.step,
      rng: {
        prompts: this.rngPrompts.getState(),
        rollout: this.rngRollout.getState(),
        train: this.rngTrain.getState(),
      },
      banned: [...this.banned],
      ...(pending.length ? { pendingRollouts: pending } : {}),
      ...(metrics ? { metrics } : {}),
    };
    const meta = { format: "pt", step: String(this.step), policy: policy.name };
    this.lastCheckpoint = this.dir.writeCheckpoint(this.step, {
      "model.safetensors": encodeSafetensorsF32(this.params, { metadata: meta }),
      "model-old.safetensors": encodeSafetensorsF32(this.oldParams, { metadata: meta }),
      "model-ema.safetensors": encodeSafetensorsF32(this.ema.params, { metadata: meta }),
      "optimizer.safetensors": encodeSafetensorsF32({
        ...prefixed("m.", adamState.m),
        ...prefixed("v.", adamState.v),
      }),
      ...(pending.length ? { "rollout-versions.safetensors": this.pendingVersionsFile(pending) } : {}),
      "trainer-state.json": `${JSON.stringify(state, null, 1)}\n`,
    });
    this.dir.pruneCheckpoints(this.config.keepCheckpoints);
  }

  writeReport(): void {
    const { dir: run, config } = this;
    const { policy, sampler, reward } = this.options;
    // The newest sample grids, including those of earlier (resumed) sessions.
    const gallery: GalleryItem[] = existsSync(run.samplesDir)
      ? readdirSync(run.samplesDir)
          .filter((f) => /^step-\d+\.png$/.test(f))
          .sort()
          .slice(-12)
          .map((f) => ({
            path: join(run.samplesDir, f),
            caption: `${f.slice(0, -4)}: rollouts, one group per row`,
          }))
      : [];
    run.writeFileAtomic(
      run.reportPath,
      renderReport({
        title: `Edit-R1 training: ${policy.name}`,
        metrics: run.readMetrics(),
        gallery,
        facts: {
          policy: policy.name,
          sampler: sampler.name,
          reward: reward.name,
          "prompts per batch × group size × batches": `${config.promptsPerBatch} × ${config.groupSize} × ${config.rolloutBatches}`,
          beta: config.nft.beta,
          "KL weight": config.nft.klWeight,
          lr: config.optimizer.lr,
        },
      }),
    );
  }

  /** Writes the report and stops the run: the last checkpoint stays as it was. */
  private diverged(reason: string): never {
    this.writeReport();
    throw new TrainingDivergedError(this.step + 1, reason, this.lastCheckpoint);
  }

  /**
   * m distinct unbanned prompts of one resolution bucket, in a random order: the bucket of the first prompt of
   * a random permutation, then the next prompts of the permutation in that bucket. With one bucket this is the
   * permutation's first m prompts.
   */
  private async drawPrompts(): Promise<{ index: number; request: EditRequest }[]> {
    const { config, options } = this;
    const { prompts, policy } = options;
    const available: number[] = [];
    for (let i = 0; i < prompts.size; i++) if (!this.banned.has(prompts.groupKey(i))) available.push(i);
    if (available.length < config.promptsPerBatch)
      throw new PromptsExhaustedError(
        `only ${available.length} of ${prompts.size} prompts are not banned, fewer than promptsPerBatch = ${config.promptsPerBatch}; ` +
          "add prompts, lower promptsPerBatch, or turn off filter.banPrompts",
      );
    const perm = this.rngPrompts.permutation(available.length).map((i) => available[i]!);
    if (!policy.bucketKey) {
      const chosen = perm.slice(0, config.promptsPerBatch);
      return Promise.all(chosen.map(async (index) => ({ index, request: await prompts.get(index) })));
    }
    const out: { index: number; request: EditRequest }[] = [];
    let bucket: string | undefined;
    // Requests load m at a time (images decode concurrently), in permutation order.
    for (let at = 0; at < perm.length; at += config.promptsPerBatch) {
      const window = perm.slice(at, at + config.promptsPerBatch);
      const loaded = await Promise.all(
        window.map(async (index) => ({ index, request: await prompts.get(index) })),
      );
      for (const drawn of loaded) {
        const key = policy.bucketKey(drawn.request);
        bucket ??= key;
        if (key === bucket) out.push(drawn);
        if (out.length === config.promptsPerBatch) return out;
      }
    }
    throw new PromptsExhaustedError(
      `the resolution bucket ${bucket} holds only ${out.length} unbanned prompts, fewer than promptsPerBatch = ` +
        `${config.promptsPerBatch}; add prompts of that size, lower promptsPerBatch, or resize the data to fewer buckets`,
    );
  }

  /**
   * Hands out the rollout batches of `step`: for each, m prompts (one bucket) × K samples and the noise
   * generator's state, which this process then advances past the batch's noise as if it had drawn it.
   */
  private async handOutStep(step: number): Promise<void> {
    const { config, options } = this;
    const { policy } = options;
    const list: HandedOut[] = [];
    for (let b = 0; b < config.rolloutBatches; b++) {
      const drawn = await this.drawPrompts();
      const requests = drawn.flatMap((d) => Array<EditRequest>(config.groupSize).fill(d.request));
      const dim = policy.latentSize(requests[0]!);
      for (const r of requests) {
        if (policy.latentSize(r) !== dim)
          throw new ConfigError(
            `policy ${policy.name}: requests in one rollout batch have different latent sizes (${dim} vs ${policy.latentSize(r)}); ` +
              "the policy must give requests of different sizes different bucketKeys",
          );
      }
      const noise = this.rngRollout.getState();
      this.rngRollout.normals(requests.length * dim);
      const job: RolloutJob = {
        step,
        batch: b,
        promptIndices: drawn.map((d) => d.index),
        groupSize: config.groupSize,
        noise,
        version: this.step,
      };
      if (!this.published.has(job.version)) {
        await this.rollouts.publishVersion(job.version, this.oldParams);
        this.published.add(job.version);
        // A lagging run may checkpoint while jobs of this version are out; the checkpoint then carries it.
        if (config.rolloutLag > 0) this.versionCopies.set(job.version, cloneParams(this.oldParams));
      }
      list.push(this.dispatch(job, requests));
    }
    this.handedOut.set(step, list);
  }

  private dispatch(job: RolloutJob, requests: EditRequest[]): HandedOut {
    const result = this.rollouts.run(job, requests);
    result.catch(() => {}); // awaited in its step; this only silences the unhandled-rejection warning meanwhile
    // Training needs the conditions encoded here too; do it while the rollout runs elsewhere.
    const prepared =
      this.rollouts instanceof InProcessRollouts ? undefined : this.options.policy.prepare?.(requests);
    prepared?.catch(() => {});
    return { job, requests, result, prepared };
  }

  /** A job's requests, loaded from the prompt set. */
  private async jobRequests(job: RolloutJob): Promise<EditRequest[]> {
    const loaded = await Promise.all(job.promptIndices.map((i) => this.options.prompts.get(i)));
    return jobRequests(job, (i) => loaded[job.promptIndices.indexOf(i)]!);
  }

  /** A finished job's batch, checked against its job, as one sample per request. */
  private async rolloutSamples(handed: HandedOut): Promise<RolloutSample[]> {
    const { job, requests } = handed;
    const batch = await handed.result;
    const dim = this.options.policy.latentSize(requests[0]!);
    if (batch.x0.length !== requests.length * dim || batch.images.length !== requests.length)
      throw new EditR1Error(
        `rollouts (${this.rollouts.name}) returned ${batch.x0.length} latent values and ${batch.images.length} images ` +
          `for step ${job.step} batch ${job.batch}; expected ${requests.length * dim} and ${requests.length}`,
      );
    return requests.map((request, i) => ({
      promptIndex: job.promptIndices[Math.floor(i / job.groupSize)]!,
      request,
      x0: batch.x0.slice(i * dim, (i + 1) * dim),
      sigmas: batch.sigmas,
      image: batch.images[i]!,
    }));
  }

  /** The old-policy versions that pending jobs name, as one file (`v<version>.<name>`). */
  private pendingVersionsFile(pending: readonly RolloutJob[]): Uint8Array {
    const tensors: ParamSet = {};
    for (const v of new Set(pending.map((j) => j.version))) {
      const params = this.versionCopies.get(v);
      if (!params) throw new EditR1Error(`internal: rollout version ${v} has no copy to checkpoint`);
      Object.assign(tensors, prefixed(`v${v}.`, params));
    }
    return encodeSafetensorsF32(tensors);
  }

  /** Consecutive runs of `trainBatchSize` samples of `order`, each from one bucket (buckets in order of first appearance). */
  private microBatches(order: number[], samples: readonly RolloutSample[]): number[][] {
    const size = this.config.trainBatchSize;
    const byBucket = new Map<string, number[]>();
    for (const s of order) {
      const bucket = this.options.policy.bucketKey?.(samples[s]!.request) ?? "";
      let list = byBucket.get(bucket);
      if (!list) byBucket.set(bucket, (list = []));
      list.push(s);
    }
    const out: number[][] = [];
    for (const list of byBucket.values())
      for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
    return out;
  }
}
