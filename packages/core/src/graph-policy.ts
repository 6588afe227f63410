import {
  type Device,
  type DeviceValues,
  type DType,
  defaultRuntime,
  Graph,
  grad,
  numel,
  ops,
  type Runtime,
  type Session,
  SessionCache,
  type Tensor,
  type TensorData,
} from "@edit-r1/engine";
import { ConfigError, EditR1Error, ShapeError } from "./errors.js";
import { buildNftObjective } from "./nft-graph.js";
import { advantageToR, DEFAULT_NFT_SETTINGS, type NftSettings } from "./nft-loss.js";
import type { ParamSet } from "./params.js";
import type { NftBatch, NftStepResult } from "./trainable-policy.js";
import type { VelocityFn } from "./types.js";

/**
 * What a model contributes to graph-based training: shapes and a builder of its velocity subgraph.
 * Everything else (rollout sessions, the fused NFT step, gradients) is `GraphNftPolicyCore`'s job.
 */
export interface VelocityGraphSpec {
  /** Per-sample latent shape, e.g. [256, 12] for 256 tokens of 12 channels. */
  latentShape: readonly number[];
  /** Per-sample conditioning inputs (name → dtype and per-sample shape), fed batch-first. */
  conditions: Readonly<Record<string, { dtype: DType; shape: readonly number[] }>>;
  /** Trainable parameters (LoRA factors): name → shape, float32. */
  parameters: Readonly<Record<string, readonly number[]>>;
  /**
   * Builds v(x_t, t | cond; params) for a batch: `xt` is float32 [B, ...latentShape], `t` float32 [B],
   * each condition [B, ...shape]; returns [B, ...latentShape]. `params` undefined means the frozen base
   * model (v_ref). The fused training graph calls this three times on ONE graph (θ, old, reference), so
   * frozen weights must be created once per graph and reused (models' `graphWeights` does this; a
   * `WeakMap<Graph, …>` does too): a second `g.initializer` with the same name fails.
   */
  buildVelocity(
    g: Graph,
    xt: Tensor,
    t: Tensor,
    cond: Record<string, Tensor>,
    params: Record<string, Tensor> | undefined,
  ): Tensor;
}

export interface GraphNftPolicyOptions {
  /** Where sessions run (default cpu). */
  device?: Device;
  /** Build v_θ inside a recompute region (gradient checkpointing): less memory, one more forward. */
  recompute?: boolean;
  /** Worker pool for the sessions (default: the engine's shared pool). */
  runtime?: Runtime;
  /** onnxruntime intra-op threads per session (default: onnxruntime's choice, all cores). */
  threads?: number;
}

/** Condition arrays by name, batch-first, typed by the condition's dtype (Float32Array for float32, …). */
export type ConditionFeeds = Readonly<Record<string, TensorData>>;

/** A built graph and the named tensors a session computes from it. */
export interface BuiltGraph {
  graph: Graph;
  outputs: Record<string, Tensor>;
}

export class GraphPolicyError extends EditR1Error {}

// Graph input names. Prefixed names contain a "." and the fixed ones do not, so they never collide.
const X = "x";
const T = "t";
const X0 = "x0";
const NOISE = "noise";
const R = "r";
const MASK = "mask";
const V = "v";
const condName = (name: string) => `cond.${name}`;
const thetaName = (name: string) => `theta.${name}`;
const oldName = (name: string) => `old.${name}`;
const gradName = (name: string) => `grad.${name}`;
const accName = (name: string) => `acc.${name}`;
const accOutName = (name: string) => `next.acc.${name}`;
const SCALE = "scale";
/** Rollouts whose fixed feeds stay on the GPU at once (webgpu): the one running and the one before. */
const RESIDENT_ROLLOUTS = 2;

type ArrayClass = new (n: number) => TensorData;
const ARRAY_OF: Readonly<Record<DType, ArrayClass>> = {
  float32: Float32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

/**
 * The model-agnostic bridge from a velocity subgraph to what the trainer needs: a rollout `VelocityFn`
 * and the fused DiffusionNFT step. Per batch size it compiles (once, cached) a forward graph with the
 * parameters as inputs, and one training graph computing v_θ (θ as inputs), v_old (old parameters as
 * inputs) and v_ref (no parameters), the NFT objective (`buildNftObjective`) and d loss/d θ. Only θ is in
 * `grad`'s list and v_old/v_ref pass through stopGradient, so nothing else is differentiated. Frozen
 * weights stay initializers; parameters, latents and conditions cross the boundary each call.
 */
export class GraphNftPolicyCore {
  /** Rollout sessions ("velocity:<B>") and training sessions ("train:<B>|β|KL|clip"), compiled once each. */
  private readonly sessions: SessionCache;
  /** Device values of resident rollout feeds (webgpu) and their rollouts, oldest first. */
  private rollouts: { values: DeviceValues; resident: string[] } | undefined;
  private nextRollout = 0;
  private disposed = false;
  private readonly latentSize: number;

  constructor(
    readonly spec: VelocityGraphSpec,
    readonly options: GraphNftPolicyOptions = {},
  ) {
    const bad = (what: string, shape: readonly number[]) =>
      !Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d <= 0)
        ? `${what} [${shape.join(",")}]`
        : undefined;
    const problems = [
      bad("latentShape", spec.latentShape),
      ...Object.entries(spec.conditions).map(([k, c]) => bad(`condition "${k}"`, c.shape)),
      ...Object.entries(spec.parameters).map(([k, s]) => bad(`parameter "${k}"`, s)),
    ].filter((p) => p !== undefined);
    if (spec.latentShape.length === 0) problems.unshift("latentShape [] (a latent needs at least one dim)");
    if (problems.length)
      throw new ConfigError(
        `GraphNftPolicyCore: shapes must be non-empty lists of positive integers; bad: ${problems.join(", ")}`,
      );
    if (Object.keys(spec.parameters).length === 0)
      throw new ConfigError("GraphNftPolicyCore: the spec declares no trainable parameters");
    this.latentSize = numel(spec.latentShape);
    const { device, runtime, threads } = options;
    this.sessions = new SessionCache({ device, runtime, threads });
  }

  /** The rollout graph for `batchSize` samples: inputs x, t, cond.*, theta.*; output v. */
  velocityGraph(batchSize: number): BuiltGraph {
    checkBatchSize(batchSize);
    const g = new Graph(`velocity_b${batchSize}`);
    const xt = g.input(X, "float32", [batchSize, ...this.spec.latentShape]);
    const t = g.input(T, "float32", [batchSize]);
    const cond = this.conditionInputs(g, batchSize);
    const params = this.parameterInputs(g, thetaName);
    const v = g.scope("theta", () => this.buildVelocity(g, xt, t, cond, params, "v_θ"));
    return { graph: g, outputs: { [V]: v } };
  }

  /**
   * The fused training graph for `batchSize` samples and these NFT settings: inputs x0, noise, t, r, mask,
   * cond.*, theta.*, old.*; outputs loss, policyLoss, klLoss and grad.<parameter> for every parameter.
   */
  trainingGraph(
    batchSize: number,
    settings: Partial<NftSettings> = {},
    options: { accumulate?: boolean } = {},
  ): BuiltGraph {
    checkBatchSize(batchSize);
    const g = new Graph(`nft_step_b${batchSize}`);
    const full = [batchSize, ...this.spec.latentShape];
    const x0 = g.input(X0, "float32", full);
    const noise = g.input(NOISE, "float32", full);
    const t = g.input(T, "float32", [batchSize]);
    const r = g.input(R, "float32", [batchSize]);
    const mask = g.input(MASK, "float32", [batchSize]);
    const cond = this.conditionInputs(g, batchSize);
    const theta = this.parameterInputs(g, thetaName);
    const old = this.parameterInputs(g, oldName);
    const tc = ops.reshape(t, [batchSize, ...this.spec.latentShape.map(() => 1)]);
    const xt = g.scope("x_t", () => ops.add(ops.mul(ops.sub(1, tc), x0), ops.mul(tc, noise)));
    const buildTheta = () => this.buildVelocity(g, xt, t, cond, theta, "v_θ");
    const vTheta = g.scope("theta", () => (this.options.recompute ? g.recompute(buildTheta) : buildTheta()));
    const vOld = g.scope("old", () => this.buildVelocity(g, xt, t, cond, old, "v_old"));
    const vRef = g.scope("ref", () => this.buildVelocity(g, xt, t, cond, undefined, "v_ref"));
    const objective = buildNftObjective(g, { x0, xt, t, vTheta, vOld, vRef, r, mask }, settings);
    const names = Object.keys(this.spec.parameters);
    const grads = grad(
      objective.loss,
      names.map((n) => theta[n]!),
    );
    const outputs: Record<string, Tensor> = {
      loss: objective.loss,
      policyLoss: objective.policyLoss,
      klLoss: objective.klLoss,
    };
    if (options.accumulate) {
      // next.acc = acc + scale·grad: the gradient sum of a step stays where the session runs.
      const scale = g.input(SCALE, "float32", []);
      names.forEach((n, i) => {
        const acc = g.input(accName(n), "float32", this.spec.parameters[n]!);
        outputs[accOutName(n)] = ops.add(acc, ops.mul(grads[i]!, scale));
      });
    } else
      names.forEach((n, i) => {
        outputs[gradName(n)] = grads[i]!;
      });
    return { graph: g, outputs };
  }

  /** The feeds of `velocityGraph(batchSize)` for latents `x` at time `sigma`. */
  velocityFeeds(
    conditions: ConditionFeeds,
    params: ParamSet,
    batchSize: number,
    x: Float32Array,
    sigma: number,
  ): Record<string, TensorData> {
    checkBatchSize(batchSize);
    return {
      ...this.latentFeeds(x, sigma, batchSize),
      ...this.conditionFeeds(conditions, batchSize, "velocity"),
      ...this.parameterFeeds(params, thetaName, "params"),
    };
  }

  /** The feeds of `trainingGraph(B)` for one micro-batch (r from the advantages by `advantageToR`). */
  trainingFeeds(
    conditions: ConditionFeeds,
    batch: NftBatch,
    params: ParamSet,
    oldParams: ParamSet,
  ): Record<string, TensorData> {
    const B = batch.t.length;
    checkBatchSize(B);
    const n = B * this.latentSize;
    const problems: string[] = [];
    if (batch.x0.length !== n) problems.push(`x0 has ${batch.x0.length} values`);
    if (batch.noise.length !== n) problems.push(`noise has ${batch.noise.length} values`);
    if (batch.advantages.length !== B) problems.push(`advantages has ${batch.advantages.length} values`);
    if (batch.validMask.length !== B) problems.push(`validMask has ${batch.validMask.length} values`);
    if (batch.requests.length !== B) problems.push(`requests has ${batch.requests.length} entries`);
    if (problems.length)
      throw new ShapeError(
        `lossAndGradients: for ${B} samples (t's length) of ${this.latentSize} latent values, ${problems.join(", ")}`,
      );
    const settings = { ...DEFAULT_NFT_SETTINGS, ...batch.settings };
    return {
      [X0]: batch.x0,
      [NOISE]: batch.noise,
      [T]: Float32Array.from(batch.t),
      [R]: Float32Array.from(batch.advantages, (a) => advantageToR(a, settings.advClipMax, settings.advMode)),
      [MASK]: Float32Array.from(batch.validMask),
      ...this.conditionFeeds(conditions, B, "lossAndGradients"),
      ...this.parameterFeeds(params, thetaName, "params"),
      ...this.parameterFeeds(oldParams, oldName, "oldParams"),
    };
  }

  /**
   * The rollout velocity under `params` for a batch of `batchSize` samples, for a Sampler: x flattened
   * batch-first, sigma fed as t for every sample. The session is compiled on first use and cached per
   * batch size. `params` is read at each call (on webgpu: at the first), so do not change it during a rollout.
   *
   * On webgpu the conditions and θ, which every sampler step feeds unchanged, go to GPU memory once per rollout
   * (device values, `rolloutValues`) instead of once per step; only x and t cross each step. The last
   * `RESIDENT_ROLLOUTS` rollouts stay there; a rollout whose feeds were dropped since uploads them again.
   */
  velocity(conditions: ConditionFeeds, params: ParamSet, batchSize: number): VelocityFn {
    this.checkOpen("velocity");
    checkBatchSize(batchSize);
    // Checked once here, so a bad condition fails where it was passed, not inside the sampler.
    const fixed = {
      ...this.conditionFeeds(conditions, batchSize, "velocity"),
      ...this.parameterFeeds(params, thetaName, "params"),
    };
    if (this.options.device === "webgpu") return this.residentVelocity(fixed, batchSize);
    return async (x: Float32Array, sigma: number) => {
      const session = await this.velocitySession(batchSize);
      const out = await session.run({ ...this.latentFeeds(x, sigma, batchSize), ...fixed });
      return out[V] as Float32Array;
    };
  }

  /** The device values holding the resident rollouts' feeds (webgpu), once a rollout has run. */
  get rolloutValues(): DeviceValues | undefined {
    return this.rollouts?.values;
  }

  private residentVelocity(fixed: Record<string, TensorData>, batchSize: number): VelocityFn {
    const rollout = `rollout${this.nextRollout++}`;
    const name = (input: string) => `${rollout}/${input}`;
    const from = Object.fromEntries(Object.keys(fixed).map((input) => [input, name(input)]));
    return async (x: Float32Array, sigma: number) => {
      this.rollouts ??= { values: (this.options.runtime ?? defaultRuntime()).values(), resident: [] };
      const { values, resident } = this.rollouts;
      const session = await this.cached(`velocity:${batchSize}|values ${values.id}`, () => ({
        ...this.velocityGraph(batchSize),
        values,
      }));
      if (Object.values(from).some((n) => !values.spec(n))) {
        // Make room first: the oldest rollouts' feeds go (a rollout still running uploads them again).
        while (resident.length >= RESIDENT_ROLLOUTS) {
          const old = resident.shift()!;
          await values.delete(values.names.filter((n) => n.startsWith(`${old}/`)));
        }
        for (const [input, data] of Object.entries(fixed)) {
          const spec = session.inputs.find((i) => i.name === input);
          // An input the lowered graph does not use (a condition the model ignores) stays out.
          if (spec) await values.upload(name(input), spec.dtype, spec.shape, data, "webgpu");
        }
        resident.push(rollout);
      }
      const used = Object.fromEntries(
        Object.entries(from).filter(([input]) => session.inputs.some((i) => i.name === input)),
      );
      const out = await session.run(this.latentFeeds(x, sigma, batchSize), { values, from: used });
      return out[V] as Float32Array;
    };
  }

  /** One fused NFT step: loss terms and d loss/d θ for every parameter (float32, the parameters' sizes). */
  async lossAndGradients(
    conditions: ConditionFeeds,
    batch: NftBatch,
    params: ParamSet,
    oldParams: ParamSet,
  ): Promise<NftStepResult> {
    this.checkOpen("lossAndGradients");
    const feeds = this.trainingFeeds(conditions, batch, params, oldParams);
    const session = await this.trainingSession(batch.t.length, batch.settings);
    const out = await session.run(feeds);
    const gradients: ParamSet = {};
    for (const name of Object.keys(this.spec.parameters))
      gradients[name] = out[gradName(name)] as Float32Array;
    return {
      loss: scalar(out.loss!),
      policyLoss: scalar(out.policyLoss!),
      klLoss: scalar(out.klLoss!),
      gradients,
    };
  }

  /**
   * The fused NFT step with θ, θ_old and the gradient sum in device values (named by `names`): adds
   * scale·d loss/d θ to the sum where it lives and returns only the loss terms. The session is opened on
   * `values`' worker with the sum kept on the device.
   */
  async accumulateOnDevice(
    conditions: ConditionFeeds,
    batch: NftBatch,
    scale: number,
    values: DeviceValues,
    names: { theta(n: string): string; old(n: string): string; acc(n: string): string },
  ): Promise<{ loss: number; policyLoss: number; klLoss: number }> {
    this.checkOpen("accumulateOnDevice");
    const empty = Object.fromEntries(
      Object.entries(this.spec.parameters).map(([n, shape]) => [n, new Float32Array(numel(shape))]),
    );
    // The parameter feeds are checked and then left to the device values.
    const feeds = this.trainingFeeds(conditions, batch, empty, empty);
    const from: Record<string, string> = {};
    const to: Record<string, string> = {};
    for (const n of Object.keys(this.spec.parameters)) {
      delete feeds[thetaName(n)];
      delete feeds[oldName(n)];
      from[thetaName(n)] = names.theta(n);
      from[oldName(n)] = names.old(n);
      from[accName(n)] = names.acc(n);
      to[accOutName(n)] = names.acc(n);
    }
    const B = batch.t.length;
    const s = { ...DEFAULT_NFT_SETTINGS, ...batch.settings };
    const key = `train-acc:${B}|${s.beta}|${s.klWeight}|${s.advClipMax}|values ${values.id}`;
    const session = await this.sessions.get(key, () => {
      const built = this.trainingGraph(B, s, { accumulate: true });
      const deviceOutputs = Object.keys(this.spec.parameters).map(accOutName);
      return { ...built, values, deviceOutputs };
    });
    const out = await session.run({ ...feeds, [SCALE]: Float32Array.of(scale) }, { values, from, to });
    return { loss: scalar(out.loss!), policyLoss: scalar(out.policyLoss!), klLoss: scalar(out.klLoss!) };
  }

  /** Releases every cached session; later calls fail. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.rollouts?.values.dispose();
    this.rollouts = undefined;
    await this.sessions.close();
  }

  private checkOpen(what: string): void {
    if (this.disposed)
      throw new GraphPolicyError(`${what}: this GraphNftPolicyCore was disposed; create a new one`);
  }

  private velocitySession(batchSize: number): Promise<Session> {
    return this.cached(`velocity:${batchSize}`, () => this.velocityGraph(batchSize));
  }

  private trainingSession(batchSize: number, settings: Partial<NftSettings>): Promise<Session> {
    const s = { ...DEFAULT_NFT_SETTINGS, ...settings };
    // β, the KL weight and advClipMax are constants of the graph; advMode only shapes r on this side.
    const key = `${batchSize}|${s.beta}|${s.klWeight}|${s.advClipMax}`;
    return this.cached(`train:${key}`, () => this.trainingGraph(batchSize, s));
  }

  private cached(
    key: string,
    build: () => BuiltGraph & { values?: DeviceValues; deviceOutputs?: readonly string[] },
  ): Promise<Session> {
    return this.sessions.get(key, build);
  }

  private buildVelocity(
    g: Graph,
    xt: Tensor,
    t: Tensor,
    cond: Record<string, Tensor>,
    params: Record<string, Tensor> | undefined,
    what: string,
  ): Tensor {
    const v = this.spec.buildVelocity(g, xt, t, cond, params);
    const want = xt.shape;
    if (v.graph !== g || v.rank !== want.length || v.shape.some((d, i) => d !== want[i]))
      throw new ShapeError(
        `buildVelocity (${what}) returned ${v}, expected [${want.join(",")}] in the same graph; it must return one velocity per latent value`,
      );
    // Models that compute in float16 hand back float16; the objective and the sampler work in float32.
    return ops.cast(v, "float32");
  }

  private latentFeeds(x: Float32Array, sigma: number, batchSize: number): Record<string, TensorData> {
    if (x.length !== batchSize * this.latentSize)
      throw new ShapeError(
        `velocity: x has ${x.length} values, but ${batchSize} latents of shape [${this.spec.latentShape.join(",")}] need ${batchSize * this.latentSize}`,
      );
    if (!Number.isFinite(sigma))
      throw new ShapeError(`velocity: sigma must be a finite number, got ${sigma}`);
    return { [X]: x, [T]: new Float32Array(batchSize).fill(sigma) };
  }

  private conditionInputs(g: Graph, batchSize: number): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [name, c] of Object.entries(this.spec.conditions))
      out[name] = g.input(condName(name), c.dtype, [batchSize, ...c.shape]);
    return out;
  }

  private parameterInputs(g: Graph, prefix: (name: string) => string): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [name, shape] of Object.entries(this.spec.parameters))
      out[name] = g.input(prefix(name), "float32", shape);
    return out;
  }

  private conditionFeeds(conditions: ConditionFeeds, batchSize: number, what: string) {
    const feeds: Record<string, TensorData> = {};
    const expected = this.spec.conditions;
    const unknown = Object.keys(conditions).filter((k) => !(k in expected));
    if (unknown.length)
      throw new ConfigError(
        `${what}: unknown condition(s) ${JSON.stringify(unknown)}; the spec declares ${JSON.stringify(Object.keys(expected))}`,
      );
    for (const [name, c] of Object.entries(expected)) {
      const data = conditions[name];
      if (data === undefined)
        throw new ConfigError(
          `${what}: condition "${name}" (${c.dtype} [${c.shape.join(",")}] per sample) is missing`,
        );
      const want = ARRAY_OF[c.dtype];
      if (!(data instanceof want))
        throw new ConfigError(
          `${what}: condition "${name}" is a ${data.constructor.name} but its dtype is ${c.dtype}; pass a ${want.name}`,
        );
      const n = batchSize * numel(c.shape);
      if (data.length !== n)
        throw new ShapeError(
          `${what}: condition "${name}" has ${data.length} values, but ${batchSize} samples of [${c.shape.join(",")}] need ${n}`,
        );
      feeds[condName(name)] = data;
    }
    return feeds;
  }

  private parameterFeeds(params: ParamSet, prefix: (name: string) => string, what: string) {
    const feeds: Record<string, TensorData> = {};
    const expected = this.spec.parameters;
    const missing = Object.keys(expected).filter((k) => !(k in params));
    const extra = Object.keys(params).filter((k) => !(k in expected));
    if (missing.length || extra.length)
      throw new ShapeError(
        `${what}: parameter names differ from the spec (missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(extra)})`,
      );
    for (const [name, shape] of Object.entries(expected)) {
      const data = params[name]!;
      if (!(data instanceof Float32Array) || data.length !== numel(shape))
        throw new ShapeError(
          `${what}: parameter "${name}" must be a Float32Array of ${numel(shape)} values ([${shape.join(",")}]), got ${data.constructor.name} of ${data.length}`,
        );
      feeds[prefix(name)] = data;
    }
    return feeds;
  }
}

function checkBatchSize(batchSize: number): void {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ShapeError(`batch size must be a positive integer, got ${batchSize}`);
}

function scalar(data: TensorData): number {
  return Number(data[0]);
}
