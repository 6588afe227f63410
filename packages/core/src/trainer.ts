import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AdamW, type AdamWSettings, DEFAULT_ADAMW } from "./adamw.js";
import { oldPolicyDecay } from "./decay.js";
import type { PromptSet } from "./edit-dataset.js";
import { Ema } from "./ema.js";
import { ConfigError, EditR1Error } from "./errors.js";
import { DEFAULT_GROUP_FILTER, type GroupFilterSettings, groupStatistics } from "./group-stats.js";
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
import { RunDirectory } from "./run-directory.js";
import { decodeSafetensorsF32, encodeSafetensorsF32 } from "./safetensors-f32.js";
import type { NftBatch, TrainablePolicy } from "./trainable-policy.js";
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
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await policy.exportLora!(params, tmp);
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
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
}

/** Settings whose change would make a resumed run differ from an uninterrupted one. */
function fingerprint(c: TrainConfig): string {
  const { steps: _s, checkpointEvery: _c, keepCheckpoints: _k, sampleGridEvery: _g, ...rest } = c;
  return JSON.stringify(rest);
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

interface RolloutSample {
  promptIndex: number;
  request: EditRequest;
  x0: Float32Array;
  sigmas: number[];
  image: RgbImage;
}

/**
 * Runs DiffusionNFT training (Edit-R1's loop): draw prompts in groups, roll out with the old policy,
 * score (overlapping the next rollout), group statistics and filtering, NFT loss over the sampler's own
 * sigmas with gradient accumulation, AdamW with clipping, old-policy and EMA updates, metrics,
 * atomic checkpoints and exact resume.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const config = resolveTrainConfig(options.config);
  const { policy, sampler, reward, prompts } = options;
  const run = new RunDirectory(options.outDir);
  const progress = options.progress === undefined ? process.stderr : options.progress;

  let params = policy.initialParameters();
  const oldParams = cloneParams(params);
  const ema = new Ema(params, config.emaMaxDecay);
  const adam = new AdamW(params, config.optimizer);
  let rngPrompts = Rng.derive(config.seed, "prompts");
  let rngRollout = Rng.derive(config.seed, "rollout");
  let rngTrain = Rng.derive(config.seed, "train");
  const banned = new Set<string>();
  let step = 0;

  const latest = run.latestCheckpoint();
  if (latest && !options.resume)
    throw new ConfigError(
      `${run.root} already holds checkpoints (newest: step ${latest.step}); pass resume to continue it or choose another output folder`,
    );
  if (latest && options.resume) {
    const state = JSON.parse(readFileSync(join(latest.dir, "trainer-state.json"), "utf8")) as TrainerState;
    if (state.configFingerprint !== fingerprint(config))
      throw new ConfigError(
        `cannot resume ${latest.dir}: the training settings differ from the checkpoint's (only steps, checkpointEvery, keepCheckpoints and sampleGridEvery may change). Checkpoint: ${state.configFingerprint}`,
      );
    const load = (file: string): ParamSet =>
      decodeSafetensorsF32(readFileSync(join(latest.dir, file)), join(latest.dir, file)).tensors;
    const loaded = load("model.safetensors");
    assertSameLayout(params, loaded, `checkpoint ${latest.dir} (policy ${state.policy})`);
    params = loaded;
    const old = load("model-old.safetensors");
    assertSameLayout(oldParams, old, `checkpoint ${latest.dir} old policy`);
    for (const k of Object.keys(oldParams)) oldParams[k]!.set(old[k]!);
    ema.load(load("model-ema.safetensors"));
    const moments = load("optimizer.safetensors");
    adam.loadState({
      step: state.adamStep,
      settings: config.optimizer,
      m: unprefixed("m.", moments),
      v: unprefixed("v.", moments),
    });
    rngPrompts = Rng.fromState(state.rng.prompts);
    rngRollout = Rng.fromState(state.rng.rollout);
    rngTrain = Rng.fromState(state.rng.train);
    for (const b of state.banned) banned.add(b);
    step = state.step;
    run.truncateMetrics(step);
  } else if (existsSync(run.metricsPath)) {
    run.truncateMetrics(0);
  }

  let lastCheckpoint: string | null = latest && options.resume ? latest.dir : null;
  const metrics: StepMetrics[] = [];

  const saveCheckpoint = (): void => {
    const adamState = adam.getState();
    const state: TrainerState = {
      format: 1,
      step,
      policy: policy.name,
      configFingerprint: fingerprint(config),
      adamStep: adamState.step,
      rng: { prompts: rngPrompts.getState(), rollout: rngRollout.getState(), train: rngTrain.getState() },
      banned: [...banned],
    };
    const meta = { format: "pt", step: String(step), policy: policy.name };
    lastCheckpoint = run.writeCheckpoint(step, {
      "model.safetensors": encodeSafetensorsF32(params, { metadata: meta }),
      "model-old.safetensors": encodeSafetensorsF32(oldParams, { metadata: meta }),
      "model-ema.safetensors": encodeSafetensorsF32(ema.params, { metadata: meta }),
      "optimizer.safetensors": encodeSafetensorsF32({
        ...prefixed("m.", adamState.m),
        ...prefixed("v.", adamState.v),
      }),
      "trainer-state.json": `${JSON.stringify(state, null, 1)}\n`,
    });
    run.pruneCheckpoints(config.keepCheckpoints);
  };

  const writeReport = (): void => {
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
  };

  const drawPrompts = (): number[] => {
    const available: number[] = [];
    for (let i = 0; i < prompts.size; i++) if (!banned.has(prompts.groupKey(i))) available.push(i);
    if (available.length < config.promptsPerBatch)
      throw new PromptsExhaustedError(
        `only ${available.length} of ${prompts.size} prompts are not banned, fewer than promptsPerBatch = ${config.promptsPerBatch}; ` +
          "add prompts, lower promptsPerBatch, or turn off filter.banPrompts",
      );
    const perm = rngPrompts.permutation(available.length);
    return perm.slice(0, config.promptsPerBatch).map((i) => available[i]!);
  };

  const rollout = async (): Promise<RolloutSample[]> => {
    const indices = drawPrompts().flatMap((i) => Array<number>(config.groupSize).fill(i));
    const requests = await Promise.all(indices.map((i) => prompts.get(i)));
    const dim = policy.latentSize(requests[0]!);
    for (const r of requests) {
      if (policy.latentSize(r) !== dim)
        throw new ConfigError(
          `policy ${policy.name}: requests in one rollout batch have different latent sizes (${dim} vs ${policy.latentSize(r)}); bucket prompts by resolution`,
        );
    }
    const sigmas = policy.sigmas(requests);
    const noise = rngRollout.normals(requests.length * dim);
    const { x0 } = await sampler.sample(noise, sigmas, policy.velocity(requests, oldParams));
    const images = await policy.decode(x0, requests);
    return requests.map((request, i) => ({
      promptIndex: indices[i]!,
      request,
      x0: x0.slice(i * dim, (i + 1) * dim),
      sigmas,
      image: images[i]!,
    }));
  };

  while (step < config.steps) {
    options.signal?.throwIfAborted();
    const tStep = now();
    let rolloutS = 0;
    let rewardWaitS = 0;

    // Rollouts, with each batch's scoring overlapping the next batch's rollout.
    const samples: RolloutSample[] = [];
    const scoring: Promise<RewardOutput[]>[] = [];
    for (let b = 0; b < config.rolloutBatches; b++) {
      const t0 = now();
      const batch = await rollout();
      rolloutS += now() - t0;
      samples.push(...batch);
      const inputs: RewardInput[] = batch.map((s) => ({ ...s.request, edited: s.image }));
      const pending = reward.score(inputs, options.signal ? { signal: options.signal } : undefined);
      pending.catch(() => {}); // awaited below; this only silences the unhandled-rejection warning meanwhile
      scoring.push(pending);
    }
    const t1 = now();
    const outputs = (await Promise.all(scoring)).flat();
    rewardWaitS = now() - t1;
    if (outputs.length !== samples.length)
      throw new EditR1Error(
        `reward ${reward.name} returned ${outputs.length} scores for ${samples.length} images`,
      );
    const rewards = outputs.map((o) => o.score);
    const bad = rewards.findIndex((r) => !Number.isFinite(r));
    if (bad >= 0) {
      writeReport();
      throw new TrainingDivergedError(
        step + 1,
        `reward ${reward.name} gave ${rewards[bad]} for sample ${bad} (prompt ${JSON.stringify(samples[bad]!.request.instruction)})`,
        lastCheckpoint,
      );
    }

    // Group statistics and filtering.
    const keys = samples.map((s) => prompts.groupKey(s.promptIndex));
    const stats = groupStatistics(keys, rewards, config.filter);
    const validMask = config.filter.enabled ? stats.validMask : new Uint8Array(samples.length).fill(1);
    let newlyBanned = 0;
    if (config.filter.enabled && config.filter.banPrompts) {
      for (const key of stats.banned) {
        if (!banned.has(key)) newlyBanned++;
        banned.add(key);
      }
    }

    // Training: every sample at int(n·fraction) of its sampler's sigmas, in its own random order.
    const tTrain = now();
    const n = samples[0]!.sigmas.length - 1;
    if (samples.some((s) => s.sigmas.length - 1 !== n))
      throw new ConfigError("all rollouts of one step must use the same number of sampler steps");
    const numT = Math.max(1, Math.floor(n * config.timestepFraction));
    // Each sample's timestep order and its noise at each trained timestep, drawn once per group or per sample.
    const drawKeys = config.trainNoise === "group" ? keys : samples.map((_, i) => String(i));
    const draws = new Map<string, { timeOrder: number[]; noise: Float32Array[] }>();
    for (let i = 0; i < samples.length; i++) {
      if (draws.has(drawKeys[i]!)) continue;
      const dim = samples[i]!.x0.length;
      const timeOrder = rngTrain.permutation(n);
      draws.set(drawKeys[i]!, {
        timeOrder,
        noise: Array.from({ length: numT }, () => rngTrain.normals(dim)),
      });
    }
    const drawOf = (s: number) => draws.get(drawKeys[s]!)!;
    // A masked sample's loss and gradient are exactly zero (as in the reference, which still runs it), so
    // the filtered groups are left out of the passes altogether.
    const order = rngTrain.permutation(samples.length).filter((s) => validMask[s] === 1);
    const microBatches: number[][] = [];
    for (let i = 0; i < order.length; i += config.trainBatchSize)
      microBatches.push(order.slice(i, i + config.trainBatchSize));
    const grads = zerosLike(params);
    const scale = 1 / (Math.max(1, microBatches.length) * numT);
    let lossSum = 0;
    let policySum = 0;
    let klSum = 0;
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
        const out = await policy.lossAndGradients(batch, params, oldParams);
        if (!Number.isFinite(out.loss)) {
          writeReport();
          throw new TrainingDivergedError(
            step + 1,
            `the NFT loss is ${out.loss} (policy ${out.policyLoss}, KL ${out.klLoss})`,
            lastCheckpoint,
          );
        }
        accumulate(grads, out.gradients, scale);
        lossSum += out.loss * scale;
        policySum += out.policyLoss * scale;
        klSum += out.klLoss * scale;
      }
    }
    const gradNorm = clipGradNorm(grads, config.maxGradNorm);
    if (!Number.isFinite(gradNorm)) {
      writeReport();
      throw new TrainingDivergedError(step + 1, `the gradient norm is ${gradNorm}`, lastCheckpoint);
    }
    adam.update(params, grads);
    const emaDecayUsed = ema.update(params, step);
    step++;
    const eta = oldPolicyDecay(step, config.decayType);
    softUpdate(oldParams, params, eta);
    const trainS = now() - tTrain;

    // Log, sample grid, checkpoint (after the metrics line, so a checkpoint never lacks its line).
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
      trainedSamples: order.length,
      rewardMean,
      rewardStd,
      rewardMin: Math.min(...rewards),
      rewardMax: Math.max(...rewards),
      rewardComponents,
      groupCount: stats.groupCount,
      filteredFraction: config.filter.enabled ? stats.filteredFraction : 0,
      newlyBanned,
      bannedTotal: banned.size,
      loss: lossSum,
      policyLoss: policySum,
      klLoss: klSum,
      gradNorm,
      oldPolicyEta: eta,
      emaDecay: emaDecayUsed,
      lr: config.optimizer.lr,
      time: { rolloutS, rewardWaitS, trainS, stepS: now() - tStep },
    };
    run.appendMetrics(record);
    metrics.push(record);
    if (step % config.checkpointEvery === 0 || step === config.steps) {
      saveCheckpoint();
      // Each checkpoint also carries its EMA weights as a loadable LoRA (PEFT files), for bench --lora.
      if (policy.exportLora) await exportLoraAtomically(policy, ema.params, join(lastCheckpoint!, "lora"));
    }
    progress?.write(
      `step ${step}/${config.steps}  reward ${rewardMean.toFixed(4)} ± ${rewardStd.toFixed(4)}  ` +
        `filtered ${(record.filteredFraction * 100).toFixed(0)}%  loss ${lossSum.toPrecision(4)}  ` +
        `|g| ${gradNorm.toPrecision(3)}  ${record.time.stepS.toFixed(2)}s\n`,
    );
  }
  writeReport();
  const loraDir = policy.exportLora
    ? await exportLoraAtomically(policy, ema.params, join(run.root, "lora"))
    : undefined;
  return { run, metrics, params, oldParams, emaParams: ema.params, step, loraDir };
}
