import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { AdamW, clipGradNorm, type ParamSet, Rng } from "@edit-r1/core";
import {
  compile,
  type Device,
  Graph,
  grad,
  openSafetensors,
  ops,
  type Session,
  type Tensor,
  writeSafetensors,
} from "@edit-r1/engine";
import { generateEdits, type ShapesEdit } from "@edit-r1/shapes";
import { TinyAdapterError } from "./errors.js";
import { initTinyWeights } from "./init-weights.js";
import { InputWeights } from "./input-weights.js";
import { packImage } from "./pack-image.js";
import { tinyConditions } from "./tiny-conditions.js";
import {
  defaultTinyModelConfig,
  TINY_IMAGE_SIZE,
  TINY_IMAGE_TOKENS,
  TINY_LATENT_SIZE,
  TINY_TOKEN_CHANNELS,
  type TinyModelConfig,
  tinyFluxConfig,
} from "./tiny-config.js";
import { buildTinyVelocity } from "./tiny-velocity.js";
import { type TinyWeights, writeTinyWeights } from "./tiny-weights.js";

export interface PretrainProgress {
  /** Steps done. */
  step: number;
  steps: number;
  /** This step's flow-matching loss (before the update). */
  loss: number;
  gradNorm: number;
  elapsedMs: number;
  /** A copy of the current weights (call it only when needed: it copies every tensor). */
  snapshot(): TinyWeights;
}

export interface PretrainOptions {
  /** Total optimizer steps (a resumed run continues up to this count). */
  steps: number;
  /** Everything random (data, t, noise, initial weights) derives from it. Default 0. */
  seed?: number;
  /** Train pairs per step. Default 32. */
  batchSize?: number;
  /** Constant AdamW learning rate. Default 5e-4. */
  lr?: number;
  /** Gradient-norm clip. Default 1. */
  maxGradNorm?: number;
  /** Folder for `tiny.safetensors` + `config.json` (and the resume state `pretrain-state.safetensors`). */
  out: string;
  /** Continue from `out/pretrain-state.safetensors` when it exists. Default true. */
  resume?: boolean;
  /** Write the resume state every N steps. Default 100. */
  checkpointEvery?: number;
  /** Transformer config (diffusers keys) instead of the default tiny one. */
  transformer?: Record<string, unknown>;
  device?: Device;
  onProgress?: (progress: PretrainProgress) => void | Promise<void>;
}

export interface PretrainResult {
  steps: number;
  finalLoss: number;
  /** Mean loss over the last min(50, steps) steps of this run. */
  recentLoss: number;
  weights: TinyWeights;
}

export const PRETRAIN_STATE_FILE = "pretrain-state.safetensors";

/** A uniform 31-bit integer drawn from the named stream: seeds of the per-step data sets. */
function streamSeed(seed: number, stream: string): number {
  return Math.floor(Rng.derive(seed, stream).next() * 2 ** 31);
}

/** The training pairs of one step: depends only on (seed, step), which makes resuming exact. */
export function pretrainBatch(seed: number, step: number, batchSize: number): ShapesEdit[] {
  return generateEdits({
    seed: streamSeed(seed, `pretrain/data/${step}`),
    count: batchSize,
    split: "train",
    size: TINY_IMAGE_SIZE,
  });
}

/**
 * Supervised flow-matching pretraining of the tiny editor on shapes-world train pairs: x0 = the target image,
 * context = the source image, x_t = (1 − t)·x0 + t·ε with t ~ logit-normal(0, 1), loss = mse(v, ε − x0).
 * Every weight is trainable (weights are graph inputs; one compiled graph computes loss and all gradients),
 * AdamW from core with a constant rate and gradient clipping. Reproducible from the seed up to onnxruntime's
 * floating-point summation order, and resumable at checkpoint granularity.
 */
export async function pretrainTiny(options: PretrainOptions): Promise<PretrainResult> {
  const seed = options.seed ?? 0;
  const batchSize = options.batchSize ?? 32;
  const lr = options.lr ?? 5e-4;
  const maxGradNorm = options.maxGradNorm ?? 1;
  const checkpointEvery = options.checkpointEvery ?? 100;
  if (!Number.isInteger(options.steps) || options.steps < 0)
    throw new TinyAdapterError(`pretrainTiny: steps must be a non-negative integer, got ${options.steps}.`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new TinyAdapterError(`pretrainTiny: batchSize must be a positive integer, got ${batchSize}.`);
  const config: TinyModelConfig = defaultTinyModelConfig(options.transformer);
  const flux = tinyFluxConfig(config, "pretrainTiny options.transformer");
  const vocab = config.vocabulary;
  await mkdir(options.out, { recursive: true });

  const initial = initTinyWeights(flux, { seed, vocabSize: vocab.length, textTokens: config.textTokens });
  const params: ParamSet = Object.fromEntries(initial);
  const adam = new AdamW(params, { lr });
  const statePath = join(options.out, PRETRAIN_STATE_FILE);
  let start = 0;
  if (options.resume ?? true) start = await loadState(statePath, params, adam, { seed, batchSize });

  const { session, shapes } = await compileTrainStep(
    flux,
    batchSize,
    vocab.length,
    config.textTokens,
    options.device,
  );
  const snapshot = (): TinyWeights => ({
    config: { ...config, training: trainingRecord(options, seed, batchSize, lr, adam.step) },
    tensors: new Map(
      Object.entries(params).map(([k, v]) => [k, { shape: shapes.get(k)!, data: Float32Array.from(v) }]),
    ),
  });
  const t0 = performance.now();
  const recent: number[] = [];
  let loss = Number.NaN;
  try {
    for (let step = start; step < options.steps; step++) {
      const feeds = stepFeeds(seed, step, batchSize, vocab, config.textTokens);
      for (const [k, v] of Object.entries(params)) feeds[`w/${k}`] = v;
      const out = await session.run(feeds);
      loss = (out.loss as Float32Array)[0]!;
      if (!Number.isFinite(loss)) {
        throw new TinyAdapterError(
          `pretrainTiny: the loss became ${loss} at step ${step}; lower lr (now ${lr}) or maxGradNorm and resume.`,
        );
      }
      const grads: ParamSet = {};
      for (const k of Object.keys(params)) grads[k] = out[`g/${k}`] as Float32Array;
      const gradNorm = clipGradNorm(grads, maxGradNorm);
      adam.update(params, grads);
      recent.push(loss);
      if (recent.length > 50) recent.shift();
      const done = step + 1;
      if (done % checkpointEvery === 0 || done === options.steps) {
        await saveState(statePath, params, adam, shapes, { seed, batchSize, step: done });
      }
      await options.onProgress?.({
        step: done,
        steps: options.steps,
        loss,
        gradNorm,
        elapsedMs: performance.now() - t0,
        snapshot,
      });
    }
  } finally {
    await session.dispose();
  }
  const weights = snapshot();
  await writeTinyWeights(options.out, weights);
  return {
    steps: options.steps,
    finalLoss: loss,
    recentLoss: recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : Number.NaN,
    weights,
  };
}

function trainingRecord(
  options: PretrainOptions,
  seed: number,
  batchSize: number,
  lr: number,
  steps: number,
) {
  return {
    method: "supervised flow matching on shapes-world train pairs (pretrainTiny)",
    steps,
    seed,
    batchSize,
    lr,
    maxGradNorm: options.maxGradNorm ?? 1,
    timesteps: "logit-normal(0, 1)",
  };
}

async function compileTrainStep(
  flux: ReturnType<typeof tinyFluxConfig>,
  batch: number,
  vocabSize: number,
  textTokens: number,
  device: Device | undefined,
): Promise<{ session: Session; shapes: Map<string, readonly number[]> }> {
  const g = new Graph("tiny-pretrain");
  const f = (name: string, shape: number[]) => g.input(name, "float32", shape);
  const tokens = [batch, TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS];
  const x0 = f("x0", tokens);
  const noise = f("noise", tokens);
  const t = f("t", [batch]);
  const tc = ops.reshape(t, [batch, 1, 1]);
  const xt = ops.add(ops.mul(ops.sub(1, tc), x0), ops.mul(tc, noise));
  const weights = new InputWeights(g, "w/");
  const { velocity } = buildTinyVelocity(g, flux, weights, {
    xt,
    t,
    context: f("context", tokens),
    text: f("text", [batch, textTokens, vocabSize]),
  });
  const err = ops.sub(velocity, ops.sub(noise, x0));
  const loss = ops.reduceMean(ops.mul(err, err));
  const keys = [...weights.inputs.keys()];
  const grads = grad(loss, [...weights.inputs.values()]);
  const outputs: Record<string, Tensor> = { loss };
  keys.forEach((k, i) => {
    outputs[`g/${k}`] = grads[i]!;
  });
  const session = await compile(g, { outputs, ...(device ? { device } : {}) });
  return { session, shapes: weights.shapes };
}

function stepFeeds(
  seed: number,
  step: number,
  batchSize: number,
  vocab: readonly string[],
  textTokens: number,
): Record<string, Float32Array> {
  const edits = pretrainBatch(seed, step, batchSize);
  const requests = edits.map((e) => ({ key: e.key, instruction: e.instruction, source: e.source }));
  const { context, text } = tinyConditions(requests, vocab, textTokens);
  const x0 = new Float32Array(batchSize * TINY_LATENT_SIZE);
  edits.forEach((e, b) => {
    x0.set(packImage(e.target), b * TINY_LATENT_SIZE);
  });
  const rng = Rng.derive(seed, `pretrain/noise/${step}`);
  // Logit-normal t (SD3): most samples at mid noise, where the edit is decided, few at the ends.
  const t = Float32Array.from({ length: batchSize }, () => 1 / (1 + Math.exp(-rng.normal())));
  const noise = rng.normals(batchSize * TINY_LATENT_SIZE);
  return { x0, noise, t, context, text };
}

interface StateMeta {
  seed: number;
  batchSize: number;
  step: number;
}

async function saveState(
  path: string,
  params: ParamSet,
  adam: AdamW,
  shapes: Map<string, readonly number[]>,
  meta: StateMeta,
): Promise<void> {
  const state = adam.getState();
  const tensors: [string, { dtype: "float32"; shape: readonly number[]; data: Float32Array }][] = [];
  for (const [k, v] of Object.entries(params)) {
    const shape = shapes.get(k)!;
    tensors.push([`w/${k}`, { dtype: "float32", shape, data: v }]);
    tensors.push([`m/${k}`, { dtype: "float32", shape, data: state.m[k]! }]);
    tensors.push([`v/${k}`, { dtype: "float32", shape, data: state.v[k]! }]);
  }
  await writeSafetensors(path, tensors, {
    metadata: {
      seed: String(meta.seed),
      batch_size: String(meta.batchSize),
      step: String(meta.step),
      adam_step: String(state.step),
      adam_settings: JSON.stringify(state.settings),
    },
  });
}

/** Loads the resume state into params and adam; returns the step to continue from (0 when there is none). */
async function loadState(
  path: string,
  params: ParamSet,
  adam: AdamW,
  expect: { seed: number; batchSize: number },
): Promise<number> {
  let checkpoint: Awaited<ReturnType<typeof openSafetensors>>;
  try {
    checkpoint = await openSafetensors(path);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT" || /ENOENT|no such file/i.test(String(e))) return 0;
    throw e;
  }
  const meta = checkpoint.metadata;
  if (Number(meta.seed) !== expect.seed || Number(meta.batch_size) !== expect.batchSize) {
    throw new TinyAdapterError(
      `${path}: this resume state is for seed ${meta.seed}, batch ${meta.batch_size}, not seed ${expect.seed}, ` +
        `batch ${expect.batchSize}; pass the same settings, another out folder, or resume: false.`,
    );
  }
  const m: ParamSet = {};
  const v: ParamSet = {};
  for (const k of Object.keys(params)) {
    params[k]!.set(await checkpoint.readFloat32(`w/${k}`));
    m[k] = await checkpoint.readFloat32(`m/${k}`);
    v[k] = await checkpoint.readFloat32(`v/${k}`);
  }
  adam.loadState({ step: Number(meta.adam_step), settings: JSON.parse(meta.adam_settings!), m, v });
  return Number(meta.step);
}
