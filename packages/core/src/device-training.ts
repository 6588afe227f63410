import { type DeviceValues, Graph, ops, type Session, type Tensor } from "@edit-r1/engine";
import { type AdamWSettings, adamwStepScalars } from "./adamw.js";
import type { BuiltGraph, ConditionFeeds, GraphNftPolicyCore } from "./graph-policy.js";
import type { ParamSet } from "./params.js";
import type { NftBatch } from "./trainable-policy.js";

/** Everything that changes when the trainer takes a step: θ, θ_old, the EMA and AdamW's moments. */
export interface TrainingSnapshot {
  params: ParamSet;
  oldParams: ParamSet;
  ema: ParamSet;
  m: ParamSet;
  v: ParamSet;
}

/** The per-step numbers of one optimizer update (computed by the trainer, the same as on the host). */
export interface DeviceUpdate {
  /** AdamW's step count after this update (1 for the first). */
  adamStep: number;
  /** The EMA's decay for this step. */
  emaDecay: number;
  /** The old policy's soft-update decay η after this step. */
  oldPolicyEta: number;
}

/**
 * Training state that stays where the sessions run, for a backend that can keep tensors between runs
 * (WebGPU): θ, θ_old, the EMA, AdamW's moments and the accumulated gradients never cross to the trainer
 * during a step. Each micro-batch sends its latents and gets back three loss scalars; each update gets back
 * the gradient norm. The trainer reads the state back only for what leaves the device anyway: the old
 * policy for rollouts, and checkpoints.
 */
export interface DeviceTrainingState {
  /** Where the state lives, for messages ("webgpu"). */
  readonly device: string;
  /** Replaces the whole state (a fresh run's initial parameters, or a resumed checkpoint's). */
  load(state: TrainingSnapshot): Promise<void>;
  /** One micro-batch's fused NFT step; its gradients, times `scale`, are added to the accumulated ones. */
  accumulate(batch: NftBatch, scale: number): Promise<{ loss: number; policyLoss: number; klLoss: number }>;
  /**
   * Clips the accumulated gradients to `maxGradNorm`, applies AdamW, folds θ into the EMA and θ_old, and
   * zeroes the accumulation. Returns the gradient norm before clipping.
   */
  update(step: DeviceUpdate): Promise<number>;
  /** The old policy, read back (rollouts use it). */
  readOldParams(): Promise<ParamSet>;
  /** The whole state, read back (checkpoints). */
  read(): Promise<TrainingSnapshot>;
  dispose(): Promise<void>;
}

const PARTS = ["params", "oldParams", "ema", "m", "v"] as const;
type Part = (typeof PARTS)[number];
/** Device value names: one per part and parameter, plus the accumulated gradient. */
const valueName = (part: Part | "acc", name: string) => `${part}/${name}`;

// Inputs and outputs of the update graph.
const STEP_SIZE = "stepSize";
const BC2_SQRT = "bc2Sqrt";
const EMA_DECAY = "emaDecay";
const OLD_ETA = "oldEta";
const GRAD_NORM = "gradNorm";
const updatedName = (part: Part | "acc", name: string) => `next.${part}.${name}`;

/**
 * The optimizer step as one graph over every parameter: the global gradient norm and torch's clip
 * (coefficient maxNorm/(norm + 1e-6) when below 1), AdamW with decoupled weight decay (as `AdamW.update`),
 * ema ← d·ema + (1 − d)·θ and θ_old ← η·θ_old + (1 − η)·θ, and the accumulation zeroed. Inputs: `<part>/<name>`
 * for each part and `acc/<name>`, and the per-step scalars; outputs `next.<part>.<name>` and `gradNorm`.
 * The host computes the same in float64 per element; this computes in float32.
 */
export function buildUpdateGraph(
  parameters: Readonly<Record<string, readonly number[]>>,
  settings: AdamWSettings,
  maxGradNorm: number,
): BuiltGraph {
  const g = new Graph("nft_update");
  const names = Object.keys(parameters);
  const state: Record<Part | "acc", Record<string, Tensor>> = {
    params: {},
    oldParams: {},
    ema: {},
    m: {},
    v: {},
    acc: {},
  };
  for (const part of [...PARTS, "acc"] as const)
    for (const n of names) state[part][n] = g.input(valueName(part, n), "float32", parameters[n]!);
  const scalar = (name: string) => g.input(name, "float32", []);
  const stepSize = scalar(STEP_SIZE);
  const bc2Sqrt = scalar(BC2_SQRT);
  const emaDecay = scalar(EMA_DECAY);
  const oldEta = scalar(OLD_ETA);
  const { beta1, beta2, eps, lr, weightDecay } = settings;

  const sumSquares = names
    .map((n) => {
      const a = state.acc[n]!;
      return ops.reduceSum(
        ops.mul(a, a),
        a.shape.map((_, i) => i),
      );
    })
    .reduce((x, y) => ops.add(x, y));
  const norm = ops.sqrt(sumSquares);
  const coef = ops.minimum(ops.div(maxGradNorm, ops.add(norm, 1e-6)), 1);
  const outputs: Record<string, Tensor> = { [GRAD_NORM]: norm };
  for (const n of names) {
    const grad = ops.mul(state.acc[n]!, coef);
    const m = ops.add(ops.mul(state.m[n]!, beta1), ops.mul(grad, 1 - beta1));
    const v = ops.add(ops.mul(state.v[n]!, beta2), ops.mul(ops.mul(grad, grad), 1 - beta2));
    const denominator = ops.add(ops.div(ops.sqrt(v), bc2Sqrt), eps);
    const p = ops.sub(
      ops.mul(state.params[n]!, 1 - lr * weightDecay),
      ops.div(ops.mul(m, stepSize), denominator),
    );
    const blend = (target: Tensor, d: Tensor) => ops.add(ops.mul(target, d), ops.mul(p, ops.sub(1, d)));
    outputs[updatedName("params", n)] = p;
    outputs[updatedName("m", n)] = m;
    outputs[updatedName("v", n)] = v;
    outputs[updatedName("ema", n)] = blend(state.ema[n]!, emaDecay);
    outputs[updatedName("oldParams", n)] = blend(state.oldParams[n]!, oldEta);
    // Zero, not a constant: a fresh tensor of the same shape, written where the gradient sum lives.
    outputs[updatedName("acc", n)] = ops.sub(state.acc[n]!, state.acc[n]!);
  }
  return { graph: g, outputs };
}

/** What `GraphDeviceTraining` needs from a policy: the bucket core and conditions of a micro-batch. */
export interface DeviceTrainingHost {
  parameters: Readonly<Record<string, readonly number[]>>;
  values: DeviceValues;
  /** Compiles the update graph on the policy's device, runtime and values, with every output kept there. */
  compileUpdate(built: BuiltGraph, deviceOutputs: readonly string[]): Promise<Session>;
  /** The bucket core and batch-first conditions of one micro-batch. */
  coreFor(batch: NftBatch): Promise<{ core: GraphNftPolicyCore; conditions: ConditionFeeds }>;
}

/**
 * `DeviceTrainingState` over `GraphNftPolicyCore`: the fused NFT step of the micro-batch's bucket reads θ and
 * θ_old from device values and adds its gradients to theirs; `buildUpdateGraph` does the rest in place.
 */
export class GraphDeviceTraining implements DeviceTrainingState {
  private update_: Promise<Session> | undefined;
  private readonly names: string[];

  constructor(
    readonly device: string,
    /** Where the state lives: the device values and how to compile for them. */
    readonly host: DeviceTrainingHost,
    private readonly settings: AdamWSettings,
    private readonly maxGradNorm: number,
  ) {
    this.names = Object.keys(host.parameters);
  }

  async load(state: TrainingSnapshot): Promise<void> {
    const { values, parameters } = this.host;
    for (const part of PARTS)
      for (const n of this.names)
        await values.set(valueName(part, n), "float32", parameters[n]!, state[part][n]!);
    for (const n of this.names)
      await values.set(
        valueName("acc", n),
        "float32",
        parameters[n]!,
        new Float32Array(state.params[n]!.length),
      );
  }

  async accumulate(batch: NftBatch, scale: number) {
    const { core, conditions } = await this.host.coreFor(batch);
    return core.accumulateOnDevice(conditions, batch, scale, this.host.values, {
      theta: (n) => valueName("params", n),
      old: (n) => valueName("oldParams", n),
      acc: (n) => valueName("acc", n),
    });
  }

  async update(step: DeviceUpdate): Promise<number> {
    const session = await this.updateSession();
    const { stepSize, bc2Sqrt } = adamwStepScalars(this.settings, step.adamStep);
    const from: Record<string, string> = {};
    const to: Record<string, string> = {};
    for (const part of [...PARTS, "acc"] as const)
      for (const n of this.names) {
        from[valueName(part, n)] = valueName(part, n);
        to[updatedName(part, n)] = valueName(part, n);
      }
    const out = await session.run(
      {
        [STEP_SIZE]: Float32Array.of(stepSize),
        [BC2_SQRT]: Float32Array.of(bc2Sqrt),
        [EMA_DECAY]: Float32Array.of(step.emaDecay),
        [OLD_ETA]: Float32Array.of(step.oldPolicyEta),
      },
      { values: this.host.values, from, to },
    );
    return Number(out[GRAD_NORM]![0]);
  }

  readOldParams(): Promise<ParamSet> {
    return this.readPart("oldParams");
  }

  async read(): Promise<TrainingSnapshot> {
    const out = {} as TrainingSnapshot;
    for (const part of PARTS) out[part] = await this.readPart(part);
    return out;
  }

  async dispose(): Promise<void> {
    const session = this.update_;
    this.update_ = undefined;
    await (await session?.catch(() => undefined))?.dispose();
    await this.host.values.dispose();
  }

  private async readPart(part: Part): Promise<ParamSet> {
    const out: ParamSet = {};
    for (const n of this.names) out[n] = (await this.host.values.read(valueName(part, n))) as Float32Array;
    return out;
  }

  private updateSession(): Promise<Session> {
    if (!this.update_) {
      const built = buildUpdateGraph(this.host.parameters, this.settings, this.maxGradNorm);
      const deviceOutputs = Object.keys(built.outputs).filter((o) => o !== GRAD_NORM);
      this.update_ = this.host.compileUpdate(built, deviceOutputs);
      this.update_.catch(() => {
        this.update_ = undefined;
      });
    }
    return this.update_;
  }
}
