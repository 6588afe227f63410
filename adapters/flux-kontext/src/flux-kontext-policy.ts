import {
  type ConditionFeeds,
  type EditRequest,
  flowMatchSchedule,
  GraphNftPolicyCore,
  type NftBatch,
  type NftStepResult,
  type ParamSet,
  type RgbImage,
  Rng,
  type TrainablePolicy,
  type VelocityFn,
  type VelocityGraphSpec,
} from "@edit-r1/core";
import { type Device, Graph } from "@edit-r1/engine";
import { type ComputeDType, EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import {
  FluxKontextEditor,
  type FluxKontextSettings,
  KONTEXT_ROLLOUT_SETTINGS,
} from "./flux-kontext-editor.js";
import { FluxKontextError } from "./flux-kontext-error.js";
import { type OpenFluxKontextOptions, openFluxKontextModel } from "./flux-kontext-model.js";
import { buildKontextVelocity } from "./kontext-velocity.js";
import { type FluxLora, loadFluxLora, saveFluxLora } from "./lora-file.js";

/** The LoRA θ the policy trains (PEFT names, one rank and alpha for every module). */
export interface FluxKontextLoraSettings {
  /** Default 32 (Edit-R1). */
  rank?: number;
  /** PEFT lora_alpha; the update is scaled by alpha / rank. Default 64 (Edit-R1). */
  alpha?: number;
  /** PEFT target_modules. Default: Edit-R1's attention projections (EDIT_R1_LORA_TARGETS). */
  targets?: readonly string[];
}

export interface LoadFluxKontextPolicyOptions extends OpenFluxKontextOptions {
  /** A local pipeline folder or a Hub repo id in the local cache. */
  model: string;
  device?: Device;
  /** Compute dtype of the transformer (default float32; the VAE and text encoders stay float32). */
  dtype?: ComputeDType;
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /**
   * The resolution bucket every rollout is made at (default 512×512, as Edit-R1); sources of another size are
   * resized to it. Both sides must be multiples of 16 (the VAE's 8 × the 2×2 packing) for the real model.
   */
  resolution?: { width: number; height: number };
  /** Rollout steps (default 6); the schedule is linspace(1, 1/steps, steps), dynamically shifted, then 0. */
  steps?: number;
  /** Distilled guidance in rollouts and in all three training forwards (default 2.5). */
  guidance?: number;
  /** T5 tokens (default 128, as Edit-R1 trains). */
  maxSequenceLength?: number;
  /** Cut instructions longer than maxSequenceLength (default true, as diffusers does in Edit-R1's rollouts). */
  truncateInstructions?: boolean;
  /** The trainable LoRA. Ignored when `initialLora` is given (its rank, alpha and modules are used). */
  lora?: FluxKontextLoraSettings;
  /** Start θ from this LoRA (a PEFT folder, a .safetensors file, or one loaded) instead of PEFT's init. */
  initialLora?: string | FluxLora;
  /** Seed of the LoRA A initialisation (default 0). */
  seed?: number;
  /** Gradient checkpointing of v_θ in the fused training graph (less memory, one more forward). */
  recompute?: boolean;
  /** Requests whose conditioning (T5, CLIP, VAE) is kept, least recently used dropped first (default 256). */
  conditionCacheSize?: number;
}

/** One request's conditioning, per sample: context tokens, T5 sequence, CLIP pooled vector. */
interface KontextConditions {
  context: Float32Array;
  text: Float32Array;
  pooled: Float32Array;
}

/**
 * FLUX.1-Kontext as a core TrainablePolicy: rollouts and the fused DiffusionNFT step built on core's
 * GraphNftPolicyCore for one resolution bucket. θ is a LoRA on the transformer (PEFT names; A ~ N(0, 1/r²),
 * B = 0, so training starts at the base model). Per sample the conditions are the context-image tokens (the
 * source resized to the bucket, VAE-encoded, (z − shift)·scale, packed), the T5 sequence and CLIP's pooled
 * vector, cached per request; the distilled guidance is a constant of the graphs. Conditioning and decoding
 * go through a base-model FluxKontextEditor, so they are exactly the editor's.
 */
export class FluxKontextPolicy implements TrainablePolicy {
  readonly name = "flux-kontext";
  readonly core: GraphNftPolicyCore;
  /** The base editor (rollout settings) that encodes conditions and decodes latents. */
  readonly editor: FluxKontextEditor;
  readonly lora: { rank: number; alpha: number; targets: readonly string[] };
  /** LoRA factor shapes by PEFT key (`<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r]). */
  readonly parameterShapes: Readonly<Record<string, readonly number[]>>;
  readonly resolution: { width: number; height: number };
  /** The latent grid [h, w] of the bucket (before packing). */
  readonly grid: readonly [number, number];
  private readonly schedule: number[];
  private readonly latentValues: number;
  private readonly conditionCache = new Map<string, Promise<KontextConditions>>();
  private readonly cacheSize: number;
  private readonly initial: ParamSet | undefined;

  constructor(
    editor: FluxKontextEditor,
    private readonly options: Omit<LoadFluxKontextPolicyOptions, "model" | "initialLora"> & {
      initialLora?: FluxLora;
    },
  ) {
    this.editor = editor;
    const { transformer, vae } = editor.model;
    const config = transformer.config;
    const vaeFactor = 2 ** (vae.config.blockOutChannels.length - 1);
    const packed = vae.config.latentChannels * 4;
    if (config.inChannels !== packed)
      throw new FluxKontextError(
        `the transformer takes ${config.inChannels} channels per token but the VAE's ${vae.config.latentChannels} ` +
          `latent channels pack to ${packed}; the transformer and VAE are from different models`,
      );
    const size = editor.settings.outputSize;
    if (size === "input")
      throw new FluxKontextError(
        "FluxKontextPolicy needs an editor with a fixed outputSize (the resolution bucket)",
      );
    this.resolution = { width: size.width, height: size.height };
    const { width, height } = this.resolution;
    this.grid = [height / vaeFactor, width / vaeFactor];
    const tokens = (this.grid[0] / 2) * (this.grid[1] / 2);
    this.latentValues = tokens * config.inChannels;
    this.cacheSize = options.conditionCacheSize ?? 256;
    if (!Number.isInteger(this.cacheSize) || this.cacheSize < 1)
      throw new FluxKontextError(`conditionCacheSize must be a positive integer, got ${this.cacheSize}`);

    const start = options.initialLora;
    this.lora = start
      ? { rank: start.rank, alpha: start.alpha, targets: start.modules }
      : {
          rank: options.lora?.rank ?? 32,
          alpha: options.lora?.alpha ?? 64,
          targets: options.lora?.targets ?? EDIT_R1_LORA_TARGETS,
        };
    if (!Number.isInteger(this.lora.rank) || this.lora.rank < 1)
      throw new FluxKontextError(`lora.rank must be a positive integer, got ${this.lora.rank}`);
    if (!(this.lora.alpha > 0))
      throw new FluxKontextError(`lora.alpha must be positive, got ${this.lora.alpha}`);
    this.parameterShapes = this.findParameterShapes();
    if (Object.keys(this.parameterShapes).length === 0)
      throw new FluxKontextError(
        `lora.targets ${JSON.stringify(this.lora.targets)} match no Linear layer of this FLUX transformer; ` +
          `use PEFT module names such as ${JSON.stringify(EDIT_R1_LORA_TARGETS.slice(0, 4))}`,
      );
    this.initial = start ? this.paramsOf(start) : undefined;

    // Dynamic shift from the target tokens only (the context tokens do not count), as diffusers' Kontext does.
    this.schedule = flowMatchSchedule(editor.model.scheduler, {
      numSteps: editor.settings.steps,
      imageSeqLen: tokens,
    }).sigmas;
    const guidance = editor.settings.guidance;
    const grid = this.grid;
    const spec: VelocityGraphSpec = {
      latentShape: [tokens, config.inChannels],
      conditions: {
        context: { dtype: "float32", shape: [tokens, config.inChannels] },
        text: { dtype: "float32", shape: [editor.settings.maxSequenceLength, config.jointAttentionDim] },
        pooled: { dtype: "float32", shape: [config.pooledProjectionDim] },
      },
      parameters: this.parameterShapes,
      buildVelocity: (g, xt, t, cond, params) => {
        const batch = xt.shape[0]!;
        return buildKontextVelocity(
          g,
          transformer,
          {
            latents: xt,
            context: cond.context!,
            text: cond.text!,
            pooled: cond.pooled!,
            timestep: t,
            // Kontext has no true CFG: its distilled guidance is one more input, fixed for the whole run.
            guidance: config.guidanceEmbeds
              ? g.constant(new Float32Array(batch).fill(guidance), [batch])
              : undefined,
          },
          {
            targetGrid: grid,
            contextGrid: grid,
            dtype: options.dtype,
            lora: params
              ? { rank: this.lora.rank, alpha: this.lora.alpha, targets: this.lora.targets, tensors: params }
              : undefined,
          },
        ).velocity;
      },
    };
    this.core = new GraphNftPolicyCore(spec, {
      ...(options.device ? { device: options.device } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      ...(options.recompute ? { recompute: true } : {}),
    });
  }

  /** The LoRA factors the targets create, from a one-token build of the transformer (no weights are read). */
  private findParameterShapes(): Record<string, readonly number[]> {
    const { config } = this.editor.model.transformer;
    const g = new Graph("flux_kontext_lora_shapes");
    const input = (name: string, shape: number[]) => g.input(name, "float32", shape);
    const { lora } = buildKontextVelocity(
      g,
      this.editor.model.transformer,
      {
        latents: input("latents", [1, 1, config.inChannels]),
        context: input("context", [1, 1, config.inChannels]),
        text: input("text", [1, 1, config.jointAttentionDim]),
        pooled: input("pooled", [1, config.pooledProjectionDim]),
        timestep: input("t", [1]),
        guidance: config.guidanceEmbeds ? input("guidance", [1]) : undefined,
      },
      {
        targetGrid: [2, 2],
        contextGrid: [2, 2],
        lora: { rank: this.lora.rank, alpha: this.lora.alpha, targets: this.lora.targets },
      },
    );
    return Object.fromEntries(lora.map((p) => [p.key, [...p.input.shape]]));
  }

  /** A loaded LoRA as θ, checked against the factors this transformer creates for its modules. */
  private paramsOf(lora: FluxLora): ParamSet {
    const unused = [...lora.factors.keys()].filter((k) => !(k in this.parameterShapes));
    if (unused.length)
      throw new FluxKontextError(
        `initialLora: ${unused.length} factor(s) belong to no LoRA-able layer of this transformer, e.g. "${unused[0]}"; ` +
          "was the LoRA trained on another model?",
      );
    const out: ParamSet = {};
    for (const [key, shape] of Object.entries(this.parameterShapes)) {
      const f = lora.factors.get(key);
      if (!f || f.shape.length !== shape.length || f.shape.some((d, i) => d !== shape[i]))
        throw new FluxKontextError(
          `initialLora: factor "${key}" should have shape [${shape.join(", ")}] but is ${f ? `[${f.shape.join(", ")}]` : "missing"}; ` +
            "was the LoRA trained on another model?",
        );
      out[key] = Float32Array.from(f.data);
    }
    return out;
  }

  /** A fresh copy of θ₀: the initial LoRA, or PEFT's init (A ~ N(0, (1/r)²) from the seed, B = 0). */
  initialParameters(): ParamSet {
    if (this.initial)
      return Object.fromEntries(Object.entries(this.initial).map(([k, v]) => [k, Float32Array.from(v)]));
    const rng = Rng.derive(this.options.seed ?? 0, "flux-kontext/lora-init");
    const out: ParamSet = {};
    for (const [key, shape] of Object.entries(this.parameterShapes)) {
      const n = shape.reduce((a, b) => a * b, 1);
      out[key] = key.endsWith(".lora_A.weight")
        ? rng.normals(n).map((v) => v / this.lora.rank)
        : new Float32Array(n);
    }
    return out;
  }

  latentSize(request: EditRequest): number {
    checkSource(request);
    return this.latentValues;
  }

  sigmas(requests: readonly EditRequest[]): number[] {
    for (const r of requests) checkSource(r);
    return [...this.schedule];
  }

  velocity(requests: readonly EditRequest[], params: ParamSet): VelocityFn {
    for (const r of requests) checkSource(r);
    // Conditioning is asynchronous (sessions), a VelocityFn is handed out synchronously: encode on first call.
    let fn: Promise<VelocityFn> | undefined;
    return async (x, sigma, step) => {
      fn ??= this.conditions(requests).then((c) => this.core.velocity(c, params, requests.length));
      return (await fn)(x, sigma, step);
    };
  }

  async decode(x0: Float32Array, requests: readonly EditRequest[]): Promise<RgbImage[]> {
    const n = this.latentValues;
    if (x0.length !== requests.length * n)
      throw new FluxKontextError(
        `decode: ${x0.length} latent values for ${requests.length} requests; each needs ${n}`,
      );
    const out: RgbImage[] = [];
    for (let b = 0; b < requests.length; b++)
      out.push(await this.editor.decodeLatents(x0.subarray(b * n, (b + 1) * n), this.resolution));
    return out;
  }

  async lossAndGradients(batch: NftBatch, params: ParamSet, oldParams: ParamSet): Promise<NftStepResult> {
    return this.core.lossAndGradients(await this.conditions(batch.requests), batch, params, oldParams);
  }

  /** Writes θ as a PEFT LoRA folder (`adapter_model.safetensors` + `adapter_config.json`) that loadFluxKontext reads. */
  async exportLora(params: ParamSet, dir: string): Promise<void> {
    const factors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [key, shape] of Object.entries(this.parameterShapes)) {
      const data = params[key];
      const n = shape.reduce((a, b) => a * b, 1);
      if (!data || data.length !== n)
        throw new FluxKontextError(
          `exportLora: parameter "${key}" needs ${n} values ([${shape.join(", ")}]), got ${data ? data.length : "none"}`,
        );
      factors.set(key, { shape: [...shape], data });
    }
    const modules = [
      ...new Set(Object.keys(this.parameterShapes).map((k) => k.replace(/\.lora_[AB]\.weight$/, ""))),
    ].sort();
    await saveFluxLora(dir, { rank: this.lora.rank, alpha: this.lora.alpha, modules, factors });
  }

  /** Releases every session (the policy's and its editor's). */
  async dispose(): Promise<void> {
    await Promise.all([this.core.dispose(), this.editor.close()]);
  }

  /** The batch's conditions, batch-first, each request's encoded once and cached. */
  private async conditions(requests: readonly EditRequest[]): Promise<ConditionFeeds> {
    const each: KontextConditions[] = [];
    for (const r of requests) each.push(await this.conditionsOf(r));
    const cat = (pick: (c: KontextConditions) => Float32Array) => {
      const size = pick(each[0]!).length;
      const out = new Float32Array(size * each.length);
      for (const [i, c] of each.entries()) out.set(pick(c), i * size);
      return out;
    };
    return { context: cat((c) => c.context), text: cat((c) => c.text), pooled: cat((c) => c.pooled) };
  }

  private conditionsOf(request: EditRequest): Promise<KontextConditions> {
    // The instruction is part of the key, so a key reused for another edit cannot pick up stale conditions.
    const key = `${request.key}\u0000${request.instruction}`;
    let entry = this.conditionCache.get(key);
    if (entry) {
      // Most recently used last, so eviction drops the stalest.
      this.conditionCache.delete(key);
      this.conditionCache.set(key, entry);
      return entry;
    }
    entry = (async () => {
      const text = await this.editor.encodeInstruction(request.instruction);
      const context = await this.editor.encodeSource(request.source, this.resolution);
      return { context: context.packed, text: text.hidden, pooled: text.pooled };
    })();
    this.conditionCache.set(key, entry);
    entry.catch(() => {
      if (this.conditionCache.get(key) === entry) this.conditionCache.delete(key);
    });
    while (this.conditionCache.size > this.cacheSize)
      this.conditionCache.delete(this.conditionCache.keys().next().value!);
    return entry;
  }
}

function checkSource(request: EditRequest): void {
  const { width, height, data } = request.source;
  if (!(width > 0 && height > 0) || data.length !== width * height * 3)
    throw new FluxKontextError(
      `request "${request.key}": the source image claims ${width}×${height} RGB but has ${data.length} bytes ` +
        `(expected ${width * height * 3})`,
    );
}

/**
 * Opens a FLUX.1-Kontext pipeline as a TrainablePolicy with Edit-R1's rollout protocol (512×512, 6 steps,
 * guidance 2.5, 128 T5 tokens), each option overriding one setting.
 */
export async function loadFluxKontextPolicy(
  options: LoadFluxKontextPolicyOptions,
): Promise<FluxKontextPolicy> {
  const r = KONTEXT_ROLLOUT_SETTINGS;
  const resolution = options.resolution ?? (r.outputSize as { width: number; height: number });
  const settings: FluxKontextSettings = {
    ...r,
    steps: options.steps ?? r.steps,
    guidance: options.guidance ?? r.guidance,
    maxSequenceLength: options.maxSequenceLength ?? r.maxSequenceLength,
    outputSize: { width: resolution.width, height: resolution.height },
    resolutions: [[resolution.width, resolution.height]],
  };
  const model = await openFluxKontextModel(options.model, options);
  const vaeFactor = 2 ** (model.vae.config.blockOutChannels.length - 1);
  const multiple = 2 * vaeFactor;
  const { width, height } = resolution;
  if (![width, height].every((d) => Number.isInteger(d) && d > 0 && d % multiple === 0))
    throw new FluxKontextError(
      `resolution ${width}×${height}: both sides must be positive multiples of ${multiple} ` +
        `(the VAE's factor ${vaeFactor} times the 2×2 token packing), e.g. 512×512`,
    );
  const editor = new FluxKontextEditor(model, settings, {
    device: options.device,
    dtype: options.dtype,
    truncateInstructions: options.truncateInstructions ?? true,
    threads: options.threads,
  });
  editor.checkWeights();
  const initialLora =
    typeof options.initialLora === "string" ? await loadFluxLora(options.initialLora) : options.initialLora;
  const { model: _model, initialLora: _initial, ...rest } = options;
  try {
    return new FluxKontextPolicy(editor, { ...rest, ...(initialLora ? { initialLora } : {}) });
  } catch (e) {
    await editor.close();
    throw e;
  }
}
