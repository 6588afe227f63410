import {
  type AdamWSettings,
  type BuiltGraph,
  type ConditionFeeds,
  checkSourceCount,
  type DeviceTrainingState,
  type EditRequest,
  GraphDeviceTraining,
  GraphNftPolicyCore,
  type NftBatch,
  type NftSettings,
  type NftStepResult,
  type ParamSet,
  type RgbImage,
  requestSources,
  type TrainablePolicy,
  type VelocityFn,
} from "@edit-r1/core";
import {
  compile,
  type Device,
  type DType,
  defaultRuntime,
  Graph,
  numel,
  type Runtime,
  type Tensor,
  type TensorData,
} from "@edit-r1/engine";
import type { LoraParameter } from "@edit-r1/models";
import { AdapterKitError } from "./errors.js";
import { type LoraFile, writeLora } from "./lora-file.js";
import {
  initLoraParameters,
  type LoraSettings,
  type LoraShapes,
  loraFileOf,
  loraParameters,
} from "./lora-params.js";

/** The LoRA a velocity graph is built with: settings plus the factor tensors (θ or old), or none for the base. */
export interface VelocityLora extends LoraSettings {
  /** Factor tensors by PEFT key; absent when only discovering which factors the targets create. */
  tensors?: Record<string, Tensor>;
}

/** One resolution bucket of a model: shapes, schedule and the velocity graph for requests of that size. */
export interface GraphBucket {
  /** Per-sample latent shape, e.g. [tokens, channels]. */
  latentShape: readonly number[];
  /** Per-sample conditioning inputs (name → dtype and per-sample shape), what `encode` returns. */
  conditions: Readonly<Record<string, { dtype: DType; shape: readonly number[] }>>;
  /** The rollout sigma schedule, from 1 down to a terminal 0. */
  sigmas: readonly number[];
  /**
   * v(x_t, t | cond; LoRA) for a batch: `xt` [B, ...latentShape], `t` [B], conditions [B, ...shape]. Returns the
   * velocity and the LoRA factors the build created or used (their keys name the trainable parameters). Frozen
   * weights must be created once per graph (models' `graphWeights` does this): the training graph builds the
   * velocity three times on one graph (θ, old, reference).
   */
  buildVelocity(
    g: Graph,
    xt: Tensor,
    t: Tensor,
    cond: Record<string, Tensor>,
    lora: VelocityLora | undefined,
  ): { velocity: Tensor; lora: readonly LoraParameter[] };
}

/** What an adapter writes to get a TrainablePolicy: its model wiring, nothing model-agnostic. */
export interface GraphPolicyDefinition {
  /** The policy's name (also the namespace of its LoRA-init stream). */
  name: string;
  /** Recorded in exported LoRAs' adapter_config.json (base_model_name_or_path). */
  baseModel: string;
  /** The bucket a request belongs to; requests of one bucket share latent shape, schedule and graphs. */
  bucketKey(request: EditRequest): string;
  /** The bucket for a key `bucketKey` returned (called once per key; `request` is one of its requests). */
  bucket(key: string, request: EditRequest): GraphBucket;
  /** A small bucket to find which LoRA factors the targets create; building it must not read weights. */
  probeBucket(): GraphBucket;
  /** One request's conditions (text/VLM encoder, VAE …), per sample, typed as the bucket declares. */
  encode(request: EditRequest, bucket: GraphBucket): Promise<Record<string, TensorData>>;
  /** One sample's clean latents → its image. */
  decode(x0: Float32Array, request: EditRequest, bucket: GraphBucket): Promise<RgbImage>;
  /** Source images one request may have (default 1). */
  maxSources?: number;
  /** Checks one request before any work (image sizes, vocabulary …); throws a message naming the request. */
  check?(request: EditRequest): void;
  /** Frees what the definition owns (its encoder sessions). */
  dispose?(): Promise<void>;
}

export interface GraphPolicyOptions {
  /** The LoRA θ trains when `initialLora` is not given. */
  lora: LoraSettings;
  /** Start θ from this LoRA (its rank, alpha and modules replace `lora`). */
  initialLora?: LoraFile;
  /** Where `initialLora` came from, for messages. */
  initialLoraPath?: string;
  /** Seed of a fresh LoRA's A initialisation (default 0). */
  initSeed?: number;
  device?: Device;
  threads?: number;
  runtime?: Runtime;
  /** Gradient checkpointing of v_θ in the fused training graph. */
  recompute?: boolean;
  /** Requests whose conditions are kept, least recently used dropped first (default 256). */
  conditionCacheSize?: number;
  /**
   * Keep the training state (θ, θ_old, EMA, AdamW moments, gradient sums) where the sessions run between steps
   * (`deviceTraining`). Default: on `webgpu`, the one backend whose tensors can stay on the device between runs;
   * on the CPU it also works (the state stays in the session worker) but is off by default, since the trainer's
   * own float64 AdamW then gives the reference results.
   */
  deviceState?: boolean;
}

/** A TrainablePolicy built from a GraphPolicyDefinition, with its LoRA and buckets exposed. */
export interface GraphPolicy extends TrainablePolicy {
  readonly lora: LoraSettings;
  /** Factor shapes by PEFT key: the trainable parameters. */
  readonly parameterShapes: LoraShapes;
  bucketKey(request: EditRequest): string;
  prepare(requests: readonly EditRequest[]): Promise<void>;
  exportLora(params: ParamSet, dir: string): Promise<void>;
  /** Device-resident training state (core's `GraphDeviceTraining`) on webgpu or with `deviceState`; else undefined. */
  deviceTraining(optimizer: AdamWSettings, maxGradNorm: number): DeviceTrainingState | undefined;
  /**
   * The graphs a batch of `batchSize` requests of `request`'s bucket compiles, built but not lowered or run
   * (nothing is encoded and no session opens): the rollout velocity and the fused training step. For inspection:
   * kernel coverage per provider, memory planning.
   */
  graphs(
    request: EditRequest,
    batchSize?: number,
    settings?: Partial<NftSettings>,
  ): { velocity: BuiltGraph; training: BuiltGraph };
  dispose(): Promise<void>;
}

/**
 * The shared adapter half: turns a model's wiring into a TrainablePolicy. It discovers the LoRA factors, makes
 * θ₀ (PEFT init, or a loaded LoRA checked module by module), keeps one GraphNftPolicyCore per resolution
 * bucket (rollout graph and fused NFT step, sessions cached per batch size), encodes and caches each
 * request's conditions (`prepare`), decodes per sample, and exports θ in the released LoRA form.
 */
export function createGraphPolicy(
  definition: GraphPolicyDefinition,
  options: GraphPolicyOptions,
): GraphPolicy {
  return new GraphPolicyImpl(definition, options);
}

interface Bucket {
  key: string;
  spec: GraphBucket;
  core: GraphNftPolicyCore;
  latentSize: number;
}

class GraphPolicyImpl implements GraphPolicy {
  readonly name: string;
  readonly lora: LoraSettings;
  readonly parameterShapes: LoraShapes;
  private readonly initial: ParamSet | undefined;
  private readonly buckets = new Map<string, Bucket>();
  private readonly conditionCache = new Map<string, Promise<Record<string, TensorData>>>();
  private readonly cacheSize: number;

  constructor(
    private readonly definition: GraphPolicyDefinition,
    private readonly options: GraphPolicyOptions,
  ) {
    this.name = definition.name;
    const start = options.initialLora;
    this.lora = start ? { rank: start.rank, alpha: start.alpha, targets: start.modules } : options.lora;
    const { rank, alpha } = this.lora;
    if (!Number.isInteger(rank) || rank < 1)
      throw new AdapterKitError(`${this.name}: LoRA rank must be a positive integer, got ${rank}`);
    if (!(alpha > 0)) throw new AdapterKitError(`${this.name}: LoRA alpha must be positive, got ${alpha}`);
    this.cacheSize = options.conditionCacheSize ?? 256;
    if (!Number.isInteger(this.cacheSize) || this.cacheSize < 1)
      throw new AdapterKitError(`conditionCacheSize must be a positive integer, got ${this.cacheSize}`);
    this.parameterShapes = this.discoverLora();
    if (Object.keys(this.parameterShapes).length === 0)
      throw new AdapterKitError(
        `${this.name}: the LoRA targets ${JSON.stringify(this.lora.targets)} match no Linear layer of the model; ` +
          'use PEFT module names such as "attn.to_q"',
      );
    this.initial = start
      ? loraParameters(start, this.parameterShapes, start.file ?? options.initialLoraPath ?? "initial LoRA")
      : undefined;
  }

  /** The factors the targets create, from a build of the probe bucket (no weights are read). */
  private discoverLora(): Record<string, readonly number[]> {
    const probe = this.definition.probeBucket();
    const g = new Graph(`${this.name}_lora_shapes`);
    const xt = g.input("xt", "float32", [1, ...probe.latentShape]);
    const t = g.input("t", "float32", [1]);
    const cond = Object.fromEntries(
      Object.entries(probe.conditions).map(([k, c]) => [k, g.input(`cond.${k}`, c.dtype, [1, ...c.shape])]),
    );
    const { lora } = probe.buildVelocity(g, xt, t, cond, { ...this.lora });
    return Object.fromEntries(lora.map((p) => [p.key, [...p.input.shape]]));
  }

  initialParameters(): ParamSet {
    if (this.initial)
      return Object.fromEntries(Object.entries(this.initial).map(([k, v]) => [k, Float32Array.from(v)]));
    return initLoraParameters(
      this.parameterShapes,
      this.lora.rank,
      this.options.initSeed ?? 0,
      `${this.name}/lora-init`,
    );
  }

  bucketKey(request: EditRequest): string {
    this.check(request);
    return this.definition.bucketKey(request);
  }

  latentSize(request: EditRequest): number {
    return this.bucketOf(request).latentSize;
  }

  sigmas(requests: readonly EditRequest[]): number[] {
    return [...this.batchBucket(requests, "sigmas").spec.sigmas];
  }

  async prepare(requests: readonly EditRequest[]): Promise<void> {
    // One request at a time: encoders are large, and their sessions run one batch each anyway.
    for (const r of requests) await this.conditionsOf(r, this.bucketOf(r));
  }

  velocity(requests: readonly EditRequest[], params: ParamSet): VelocityFn {
    const bucket = this.batchBucket(requests, "velocity");
    // Conditions are ready after `prepare`; otherwise they are encoded on the first call.
    let fn: Promise<VelocityFn> | undefined;
    return async (x, sigma, step) => {
      fn ??= this.conditions(requests, bucket).then((c) => bucket.core.velocity(c, params, requests.length));
      return (await fn)(x, sigma, step);
    };
  }

  async decode(x0: Float32Array, requests: readonly EditRequest[]): Promise<RgbImage[]> {
    const bucket = this.batchBucket(requests, "decode");
    const n = bucket.latentSize;
    if (x0.length !== requests.length * n)
      throw new AdapterKitError(
        `decode: ${x0.length} latent values for ${requests.length} requests; each needs ${n}`,
      );
    const out: RgbImage[] = [];
    for (const [b, r] of requests.entries())
      out.push(await this.definition.decode(x0.subarray(b * n, (b + 1) * n), r, bucket.spec));
    return out;
  }

  async lossAndGradients(batch: NftBatch, params: ParamSet, oldParams: ParamSet): Promise<NftStepResult> {
    const bucket = this.batchBucket(batch.requests, "lossAndGradients");
    return bucket.core.lossAndGradients(
      await this.conditions(batch.requests, bucket),
      batch,
      params,
      oldParams,
    );
  }

  deviceTraining(optimizer: AdamWSettings, maxGradNorm: number): DeviceTrainingState | undefined {
    const { device = "cpu", deviceState = device === "webgpu", runtime, threads } = this.options;
    if (!deviceState) return undefined;
    const values = (runtime ?? defaultRuntime()).values();
    return new GraphDeviceTraining(
      device,
      {
        parameters: this.parameterShapes,
        values,
        compileUpdate: ({ graph, outputs }, deviceOutputs) =>
          compile(graph, {
            outputs,
            device,
            values,
            deviceOutputs,
            ...(threads !== undefined ? { threads } : {}),
            ...(runtime ? { runtime } : {}),
          }),
        coreFor: async (batch) => {
          const bucket = this.batchBucket(batch.requests, "deviceTraining");
          return { core: bucket.core, conditions: await this.conditions(batch.requests, bucket) };
        },
      },
      optimizer,
      maxGradNorm,
    );
  }

  exportLora(params: ParamSet, dir: string): Promise<void> {
    const file = loraFileOf(params, this.parameterShapes, this.lora, `${this.name} exportLora`);
    return writeLora(dir, file, { baseModel: this.definition.baseModel });
  }

  graphs(
    request: EditRequest,
    batchSize = 1,
    settings: Partial<NftSettings> = {},
  ): { velocity: BuiltGraph; training: BuiltGraph } {
    const { core } = this.bucketOf(request);
    return { velocity: core.velocityGraph(batchSize), training: core.trainingGraph(batchSize, settings) };
  }

  async dispose(): Promise<void> {
    const cores = [...this.buckets.values()].map((b) => b.core.dispose());
    this.buckets.clear();
    this.conditionCache.clear();
    await Promise.all([...cores, this.definition.dispose?.()]);
  }

  private check(request: EditRequest): void {
    for (const [i, image] of requestSources(request).entries()) {
      const { width, height, data } = image;
      if (
        !(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0) ||
        data.length !== width * height * 3
      )
        throw new AdapterKitError(
          `request "${request.key}": source image ${i + 1} claims ${width}×${height} RGB but has ${data.length} bytes ` +
            `(expected ${width * height * 3})`,
        );
    }
    checkSourceCount(request, this.definition.maxSources ?? 1, this.name);
    this.definition.check?.(request);
  }

  private bucketOf(request: EditRequest): Bucket {
    return this.bucketFor(this.bucketKey(request), request);
  }

  /** The bucket of `key` (from `bucketKey(request)`), made on first use. */
  private bucketFor(key: string, request: EditRequest): Bucket {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      const spec = this.definition.bucket(key, request);
      const { device, threads, runtime, recompute } = this.options;
      const core = new GraphNftPolicyCore(
        {
          latentShape: spec.latentShape,
          conditions: spec.conditions,
          parameters: this.parameterShapes,
          buildVelocity: (g, xt, t, cond, params) =>
            spec.buildVelocity(g, xt, t, cond, params ? { ...this.lora, tensors: params } : undefined)
              .velocity,
        },
        {
          ...(device ? { device } : {}),
          ...(threads !== undefined ? { threads } : {}),
          ...(runtime ? { runtime } : {}),
          ...(recompute ? { recompute: true } : {}),
        },
      );
      bucket = { key, spec, core, latentSize: numel(spec.latentShape) };
      this.buckets.set(key, bucket);
    }
    return bucket;
  }

  /** The one bucket of a batch; a batch spanning buckets is an error (the trainer draws batches per bucket). */
  private batchBucket(requests: readonly EditRequest[], what: string): Bucket {
    if (requests.length === 0) throw new AdapterKitError(`${what}: the batch holds no requests`);
    const keys = [...new Set(requests.map((r) => this.bucketKey(r)))];
    if (keys.length > 1)
      throw new AdapterKitError(
        `${what}: one batch spans the resolution buckets ${keys.join(", ")}; batch requests by bucketKey`,
      );
    return this.bucketFor(keys[0]!, requests[0]!);
  }

  /** The batch's conditions (all of `bucket`, checked), batch-first, each request's encoded once and cached. */
  private async conditions(requests: readonly EditRequest[], bucket: Bucket): Promise<ConditionFeeds> {
    const each: Record<string, TensorData>[] = [];
    for (const r of requests) each.push(await this.conditionsOf(r, bucket));
    const out: Record<string, TensorData> = {};
    for (const name of Object.keys(each[0]!)) {
      const first = each[0]![name]!;
      const size = first.length;
      const all = new (first.constructor as new (n: number) => TensorData)(size * each.length);
      for (const [i, c] of each.entries()) (all as Float32Array).set(c[name] as Float32Array, i * size);
      out[name] = all;
    }
    return out;
  }

  private conditionsOf(request: EditRequest, bucket: Bucket): Promise<Record<string, TensorData>> {
    // Instruction and source identity are part of the key, so a key reused for another edit gets fresh conditions.
    const key = [bucket.key, request.key, request.sourceKey ?? "", request.instruction].join("\u0000");
    let entry = this.conditionCache.get(key);
    if (entry) {
      // Most recently used last, so eviction drops the stalest.
      this.conditionCache.delete(key);
      this.conditionCache.set(key, entry);
      return entry;
    }
    entry = this.definition.encode(request, bucket.spec);
    this.conditionCache.set(key, entry);
    entry.catch(() => {
      if (this.conditionCache.get(key) === entry) this.conditionCache.delete(key);
    });
    while (this.conditionCache.size > this.cacheSize)
      this.conditionCache.delete(this.conditionCache.keys().next().value!);
    return entry;
  }
}
