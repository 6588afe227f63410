import { writeFile } from "node:fs/promises";
import {
  checkLoraCoverage,
  checkRgbImage,
  editorLora,
  imageToTensor,
  type LoraFile,
  packLatents,
  readLora,
  requestNoise,
  resizeLikeDiffusers,
  tensorToImage,
  unpackLatents,
} from "@edit-r1/adapter-kit";
import {
  checkSourceCount,
  decodeImage,
  type Editor,
  type EditRequest,
  encodePng,
  flowMatchSchedule,
  type RgbImage,
  type Sampler,
  samplerByName,
  type VelocityFn,
} from "@edit-r1/core";
import { type Device, Graph, ops, type Session, SessionCache, type Tensor } from "@edit-r1/engine";
import {
  buildAutoencoderKLDecoder,
  buildAutoencoderKLEncoder,
  buildClipTextModel,
  buildKontextVelocity,
  buildT5Encoder,
  type ComputeDType,
  clipPoolingPositions,
  clipTextInputs,
} from "@edit-r1/models";
import { FluxKontextError } from "./flux-kontext-error.js";
import {
  type FluxKontextModel,
  type OpenFluxKontextOptions,
  openFluxKontextModel,
} from "./flux-kontext-model.js";
import { kontextInputSize, type Resolution } from "./kontext-resolution.js";

/** Generation settings; every one is recorded in the editor's `protocol`. */
export interface FluxKontextSettings {
  /** Sampler steps (diffusers' default 28). */
  steps: number;
  /** The distilled guidance fed to the guidance embedder: 2.5 in Edit-R1 rollouts, 3.5 in the benchmark protocol. */
  guidance: number;
  /** "euler" (diffusers' FlowMatchEulerDiscreteScheduler), "dpm-solver++2m" (Edit-R1 rollouts) or "heun". */
  sampler: string;
  /** Noise seed; each request's noise is drawn from (seed, request key), so it does not depend on batching. */
  seed: number;
  /** T5 tokens (512 in diffusers and BFL, 128 in Edit-R1 training). */
  maxSequenceLength: number;
  /**
   * The target size: "input" (default; the chosen Kontext resolution of the source image, as BFL's CLI and
   * the Edit-R1 benchmark scripts do) or a fixed size (Edit-R1 trains at 512×512).
   */
  outputSize: "input" | { width: number; height: number };
  /** Resolutions an input is snapped to (default: PREFERRED_KONTEXT_RESOLUTIONS). */
  resolutions?: readonly Resolution[] | undefined;
  /**
   * diffusers' `_auto_resize`: snap the source to the closest of `resolutions` (default true). false keeps the
   * source's own size, each side floored to a multiple of 2 × the VAE factor (16 for FLUX: the 2×2 packing).
   */
  autoResize?: boolean | undefined;
  /**
   * diffusers' `max_area`: the output size (`outputSize`, or the source's size for "input") is rescaled to this
   * many pixels at its aspect ratio, width = round(√(maxArea·w/h)) and height = round(√(maxArea·h/w)), then
   * floored to that multiple, as FluxKontextPipeline does (its default is 1024²). Unset: the size is used as is.
   */
  maxArea?: number | undefined;
}

/** A width and height in pixels. */
export interface ImageSize {
  width: number;
  height: number;
}

/** One instruction's text conditioning: T5's sequence [length, joint_attention_dim] and CLIP's pooled vector. */
export interface KontextText {
  hidden: Float32Array;
  pooled: Float32Array;
  /** Text tokens (rows of `hidden`). */
  length: number;
}

/** Edit-R1's benchmark inference for Kontext: 28 Euler steps, guidance 3.5, the input image's size. */
export const KONTEXT_BENCHMARK_SETTINGS: FluxKontextSettings = {
  steps: 28,
  guidance: 3.5,
  sampler: "euler",
  seed: 42,
  maxSequenceLength: 512,
  outputSize: "input",
};

/** Edit-R1's rollouts for Kontext: 6 DPM-Solver++(2M) steps, guidance 2.5, 512×512, 128 T5 tokens. */
export const KONTEXT_ROLLOUT_SETTINGS: FluxKontextSettings = {
  steps: 6,
  guidance: 2.5,
  sampler: "dpm-solver++2m",
  seed: 0,
  maxSequenceLength: 128,
  outputSize: { width: 512, height: 512 },
  resolutions: [[512, 512]],
};

export interface LoadFluxKontextOptions extends OpenFluxKontextOptions, Partial<FluxKontextSettings> {
  /** A local pipeline folder or a Hub repo id in the local cache (e.g. "black-forest-labs/FLUX.1-Kontext-dev"). */
  model: string;
  /** Where sessions run: "cpu" (default) or "cuda". */
  device?: Device;
  /** A PEFT/diffusers LoRA: a .safetensors file, an adapter folder, or one already loaded. */
  lora?: string | LoraFile;
  /** The LoRA's lora_alpha when its files give none (a PEFT folder without adapter_config.json). */
  loraAlpha?: number;
  /** Multiplies the LoRA's alpha/rank (default 1; 0 turns the LoRA off). */
  loraScale?: number;
  /** Start from these settings, then apply the individual options (default: KONTEXT_BENCHMARK_SETTINGS). */
  preset?: "benchmark" | "rollout";
  /** Compute dtype of the transformer (default float32; the VAE and text encoders stay float32). */
  dtype?: ComputeDType;
  /** Allow instructions longer than the T5 limit to be cut (diffusers does, with a warning). Default false. */
  truncateInstructions?: boolean;
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /**
   * Heads per attention chunk in the transformer: one chunk's scores are alive at once instead of every head's
   * (the memory peak of a high-resolution edit). Same images; default all heads at once.
   */
  attentionHeadChunk?: number;
}

/** An edit ready to sample: see `FluxKontextEditor.prepareEdit`. */
export interface PreparedKontextEdit {
  /** The request's initial noise, packed target tokens [N_target, 4·latent_channels]. */
  noise: Float32Array;
  /** The sampler's sigmas, from 1 to the terminal 0. */
  sigmas: number[];
  velocity: VelocityFn;
  /** The output image size. */
  size: ImageSize;
}

const LATENT_SCALE_OF = (vaeBlocks: number) => 2 ** (vaeBlocks - 1);

/** A FLUX.1-Kontext editor: instruction + source image → edited image, with its sessions cached per shape. */
export class FluxKontextEditor implements Editor {
  readonly name = "flux-kontext";
  readonly protocol: Record<string, unknown>;
  private readonly sessions: SessionCache;
  private readonly sampler: Sampler;
  /** The LoRA (if any) as the velocity graphs take it: builder options and the factors' feeds. */
  private readonly lora: ReturnType<typeof editorLora>;
  private readonly vaeFactor: number;
  private closed = false;

  constructor(
    readonly model: FluxKontextModel,
    readonly settings: FluxKontextSettings,
    private readonly options: {
      device?: Device | undefined;
      dtype?: ComputeDType | undefined;
      lora?: LoraFile | undefined;
      loraScale?: number | undefined;
      truncateInstructions?: boolean | undefined;
      threads?: number | undefined;
      attentionHeadChunk?: number | undefined;
    } = {},
  ) {
    checkSettings(settings);
    this.sessions = new SessionCache({ device: options.device, threads: options.threads });
    this.sampler = samplerByName(settings.sampler);
    this.vaeFactor = LATENT_SCALE_OF(model.vae.config.blockOutChannels.length);
    const lora = options.lora;
    this.lora = editorLora(lora, options.loraScale);
    this.protocol = {
      adapter: "flux-kontext",
      model: model.dir,
      transformerLayout: model.transformerLayout,
      ...settings,
      resolutions: settings.resolutions ?? "preferred-kontext",
      dtype: options.dtype ?? "float32",
      lora: lora ? { rank: lora.rank, alpha: lora.alpha, modules: lora.modules.length } : null,
      loraScale: lora ? (options.loraScale ?? 1) : null,
    };
  }

  async edit(requests: readonly EditRequest[]): Promise<RgbImage[]> {
    const out: RgbImage[] = [];
    for (const r of requests) out.push(await this.editOne(r));
    return out;
  }

  /** Releases every session. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sessions.close();
  }

  /** Builds every component's graph once at a small size, so weights that do not fit the configs fail now. */
  checkWeights(): void {
    const m = this.model;
    const f = this.vaeFactor;
    const g = new Graph("check_vae");
    const x = g.input("x", "float32", [1, m.vae.config.inChannels, 2 * f, 2 * f]);
    buildAutoencoderKLEncoder(g, m.vae.config, m.vae.weights, x);
    buildAutoencoderKLDecoder(
      g,
      m.vae.config,
      m.vae.weights,
      g.input("z", "float32", [1, m.vae.config.latentChannels, 2, 2]),
    );
    this.textGraphs(1);
    this.transformerGraph(1, 1, 1);
  }

  private async editOne(request: EditRequest): Promise<RgbImage> {
    const prepared = await this.prepareEdit(request);
    const { x0 } = await this.sampler.sample(prepared.noise, prepared.sigmas, prepared.velocity);
    return this.decodeLatents(x0, prepared.size);
  }

  /**
   * Everything an edit samples from, before sampling: the request's noise (packed target tokens), the sigma
   * schedule, and the velocity of this editor's transformer (with its LoRA, if any) conditioned on the request.
   */
  async prepareEdit(request: EditRequest): Promise<PreparedKontextEdit> {
    this.checkOpen();
    checkSourceCount(request, 1, "flux-kontext");
    const { output } = this.sizesOf(request.source);
    const text = await this.encodeInstruction(request.instruction);
    const channels = this.model.vae.config.latentChannels;
    const h = output.height / this.vaeFactor;
    const w = output.width / this.vaeFactor;
    const noise = packLatents(
      requestNoise(this.settings.seed, "flux-kontext", request.key, channels * h * w),
      channels,
      h,
      w,
    );
    return this.prepareFromEmbeddings({ source: request.source, text, noise });
  }

  /**
   * The pipeline from given text embeddings and starting latents on (diffusers' `prompt_embeds`,
   * `pooled_prompt_embeds` and `latents` path): the source resized and VAE-encoded to context tokens, the
   * schedule for the output's token count, and the velocity. `noise` is the packed starting latent
   * [N_target, 4·latent_channels] of an output of `sizesOf(source).output`.
   */
  async prepareFromEmbeddings(input: {
    source: RgbImage;
    text: KontextText;
    noise: Float32Array;
  }): Promise<PreparedKontextEdit> {
    this.checkOpen();
    const { vae, output } = this.sizesOf(input.source);
    const { config } = this.model.transformer;
    const h = output.height / this.vaeFactor;
    const w = output.width / this.vaeFactor;
    const targetTokens = (h / 2) * (w / 2);
    if (input.noise.length !== targetTokens * config.inChannels) {
      throw new FluxKontextError(
        `the starting latents have ${input.noise.length} values; a ${output.width}×${output.height} output ` +
          `needs ${targetTokens} tokens × ${config.inChannels}`,
      );
    }
    const { text } = input;
    if (text.hidden.length !== text.length * config.jointAttentionDim) {
      throw new FluxKontextError(
        `the text embeddings have ${text.hidden.length} values, not ${text.length} tokens × ${config.jointAttentionDim}`,
      );
    }
    if (text.pooled.length !== config.pooledProjectionDim) {
      throw new FluxKontextError(
        `the pooled text embedding has ${text.pooled.length} values, not ${config.pooledProjectionDim}`,
      );
    }
    const context = await this.encodeSource(input.source, vae);
    // Dynamic shift from the target tokens only (the context tokens do not count), as diffusers' Kontext does.
    const { sigmas } = flowMatchSchedule(this.model.scheduler, {
      numSteps: this.settings.steps,
      imageSeqLen: targetTokens,
    });
    const session = await this.transformerSession(
      targetTokens,
      context.tokens,
      text.length,
      [h, w],
      context.grid,
    );
    const fixed = {
      context_latents: context.packed,
      encoder_hidden_states: text.hidden,
      pooled_projections: text.pooled,
      guidance: Float32Array.of(this.settings.guidance),
      ...this.lora.feeds,
    };
    const velocity: VelocityFn = async (x, sigma) => {
      const out = await session.run({ latents: x, timestep: Float32Array.of(sigma), ...fixed });
      return out.velocity as Float32Array;
    };
    return { noise: input.noise, sigmas, velocity, size: { width: output.width, height: output.height } };
  }

  /**
   * The sizes of an edit of `source`: `vae`, what the source is resized to before the VAE (the closest of
   * `resolutions`, or with `autoResize: false` its own size floored to a multiple of 2 × the VAE factor), and `output`
   * (`outputSize`, "input" meaning `vae`, fitted to `maxArea` when that is set).
   */
  sizesOf(source: RgbImage): { vae: ImageSize; output: ImageSize } {
    checkRgbImage(source);
    const s = this.settings;
    const multiple = this.vaeFactor * 2;
    const vae =
      s.autoResize === false
        ? flooredSize(source, multiple)
        : kontextInputSize(source.width, source.height, { resolutions: s.resolutions, multipleOf: multiple });
    const requested = s.outputSize === "input" ? vae : s.outputSize;
    const output = s.maxArea === undefined ? requested : fitToArea(requested, s.maxArea, multiple);
    return { vae, output };
  }

  /** T5 sequence embeddings ([maxSequenceLength, joint_attention_dim]) and CLIP's pooled embedding of one instruction. */
  async encodeInstruction(instruction: string): Promise<KontextText> {
    const { clip, t5 } = this.model;
    const clipIds = clip.tokenizer.encode(instruction, {
      maxLength: clip.config.maxPositionEmbeddings,
      // diffusers cuts CLIP's prompt at 77 tokens; only its pooled summary is used.
      overflow: "truncate",
    });
    const t5Ids = t5.tokenizer.encode(instruction, {
      maxLength: this.settings.maxSequenceLength,
      overflow: this.options.truncateInstructions ? "truncate" : "error",
    });
    const session = await this.cached("text", () => this.textGraphs(1));
    const out = await session.run({
      "clip.input_ids": BigInt64Array.from(clipIds.ids, BigInt),
      "clip.eos_positions": clipPoolingPositions([clipIds.ids], clip.config),
      "t5.input_ids": BigInt64Array.from(t5Ids.ids, BigInt),
    });
    return {
      pooled: out.pooled as Float32Array,
      hidden: out.hidden as Float32Array,
      length: this.settings.maxSequenceLength,
    };
  }

  /**
   * Kontext's context tokens of a source image resized to `size` (Pillow's LANCZOS, bit for bit, as diffusers'
   * VaeImageProcessor resizes): the VAE's mean latent, (z − shift)·scale, 2×2-packed to
   * [tokens, 4·latent_channels]; `grid` is the latent [h, w].
   */
  async encodeSource(
    source: RgbImage,
    size: ImageSize,
  ): Promise<{ packed: Float32Array; tokens: number; grid: [number, number] }> {
    return this.encodeImage(resizeLikeDiffusers(source, size.width, size.height));
  }

  /** Packed target tokens of one sample (an image of `size`) → the decoded RGB image. */
  async decodeLatents(packed: Float32Array, size: ImageSize): Promise<RgbImage> {
    return tensorToImage(await this.decodeToFloats(packed, size), size.width, size.height);
  }

  /**
   * Packed target tokens of one sample → the decoded image as CHW floats in [0, 1] (diffusers' postprocess
   * before it rounds to bytes): unpacked, z/scale + shift, VAE-decoded, x/2 + 1/2 clamped.
   */
  async decodeToFloats(packed: Float32Array, size: ImageSize): Promise<Float32Array> {
    const h = size.height / this.vaeFactor;
    const w = size.width / this.vaeFactor;
    return this.decode(unpackLatents(packed, this.model.vae.config.latentChannels, h, w), h, w);
  }

  private checkOpen(): void {
    if (this.closed) throw new FluxKontextError("edit: this editor was closed; load the model again");
  }

  private textGraphs(batch: number) {
    const { clip, t5 } = this.model;
    const g = new Graph("flux_kontext_text");
    const clipOut = buildClipTextModel(
      g,
      clip.config,
      clip.weights,
      clipTextInputs(g, { batch, length: clip.config.maxPositionEmbeddings }, "clip."),
      { scope: "clip" },
    );
    const ids = g.input("t5.input_ids", "int64", [batch, this.settings.maxSequenceLength]);
    const hidden = buildT5Encoder(g, t5.config, t5.weights, ids, { scope: "t5" });
    return { g, outputs: { pooled: clipOut.pooled, hidden } };
  }

  /** VAE-encodes an image to Kontext's context tokens: mean latent, (z − shift)·scale, 2×2-packed. */
  private async encodeImage(image: RgbImage) {
    const { config } = this.model.vae;
    const key = `vae-encode:${image.width}x${image.height}`;
    const session = await this.cached(key, () => {
      const g = new Graph("flux_vae_encode");
      const x = g.input("image", "float32", [1, 3, image.height, image.width]);
      const mean = buildAutoencoderKLEncoder(g, config, this.model.vae.weights, x);
      const z = ops.mul(ops.sub(mean, config.shiftFactor), config.scalingFactor);
      return { g, outputs: { latent: z } };
    });
    const out = await session.run({ image: imageToTensor(image) });
    const h = image.height / this.vaeFactor;
    const w = image.width / this.vaeFactor;
    const packed = packLatents(out.latent as Float32Array, config.latentChannels, h, w);
    return { packed, tokens: (h / 2) * (w / 2), grid: [h, w] as [number, number] };
  }

  private async decode(latent: Float32Array, h: number, w: number): Promise<Float32Array> {
    const { config } = this.model.vae;
    const session = await this.cached(`vae-decode:${h}x${w}`, () => {
      const g = new Graph("flux_vae_decode");
      const z = g.input("latent", "float32", [1, config.latentChannels, h, w]);
      const unscaled = ops.add(ops.div(z, config.scalingFactor), config.shiftFactor);
      const x = buildAutoencoderKLDecoder(g, config, this.model.vae.weights, unscaled);
      // [−1, 1] → [0, 1], clamped as diffusers' postprocess does.
      const img = ops.minimum(ops.maximum(ops.add(ops.mul(x, 0.5), 0.5), 0), 1);
      return { g, outputs: { image: img } };
    });
    return (await session.run({ latent })).image as Float32Array;
  }

  private transformerSession(
    targetTokens: number,
    contextTokens: number,
    textTokens: number,
    targetGrid: [number, number],
    contextGrid: [number, number],
  ): Promise<Session> {
    const key = `transformer:${targetGrid.join("x")}:${contextGrid.join("x")}:${textTokens}`;
    return this.cached(key, () =>
      this.transformerGraph(textTokens, targetTokens, contextTokens, targetGrid, contextGrid),
    );
  }

  /**
   * The velocity graph of one sample: target and context tokens are concatenated on the sequence axis with
   * ids (0, r, c) and (1, r, c), text ids are zeros, and only the target tokens' output is kept.
   */
  private transformerGraph(
    textTokens: number,
    targetTokens: number,
    contextTokens: number,
    targetGrid: [number, number] = [2, 2 * targetTokens],
    contextGrid: [number, number] = [2, 2 * contextTokens],
  ) {
    const { config } = this.model.transformer;
    const g = new Graph("flux_kontext_velocity");
    const lora = this.options.lora;
    const { velocity, lora: factors } = buildKontextVelocity(
      g,
      this.model.transformer,
      {
        latents: g.input("latents", "float32", [1, targetTokens, config.inChannels]),
        context: g.input("context_latents", "float32", [1, contextTokens, config.inChannels]),
        text: g.input("encoder_hidden_states", "float32", [1, textTokens, config.jointAttentionDim]),
        pooled: g.input("pooled_projections", "float32", [1, config.pooledProjectionDim]),
        timestep: g.input("timestep", "float32", [1]),
        guidance: config.guidanceEmbeds ? g.input("guidance", "float32", [1]) : undefined,
      },
      {
        targetGrid,
        contextGrid,
        dtype: this.options.dtype,
        lora: this.lora.options,
        attentionHeadChunk: this.options.attentionHeadChunk,
      },
    );
    // Every module and factor shape of the file against the graph's, before a feed could fail on one.
    if (lora) checkLoraCoverage(lora, Object.fromEntries(factors.map((p) => [p.key, p.input.shape])), "FLUX");
    return { g, outputs: { velocity } };
  }

  private cached(key: string, build: () => { g: Graph; outputs: Record<string, Tensor> }): Promise<Session> {
    return this.sessions.get(key, () => {
      const { g, outputs } = build();
      return { graph: g, outputs };
    });
  }
}

function checkSettings(s: FluxKontextSettings): void {
  if (!Number.isInteger(s.steps) || s.steps < 1)
    throw new FluxKontextError(`steps must be a positive integer, got ${s.steps}`);
  if (!Number.isFinite(s.guidance) || s.guidance < 0)
    throw new FluxKontextError(`guidance must be ≥ 0, got ${s.guidance}`);
  if (!Number.isInteger(s.maxSequenceLength) || s.maxSequenceLength < 1) {
    throw new FluxKontextError(`maxSequenceLength must be a positive integer, got ${s.maxSequenceLength}`);
  }
  if (s.maxArea !== undefined && !(Number.isFinite(s.maxArea) && s.maxArea > 0))
    throw new FluxKontextError(`maxArea must be a positive number of pixels, got ${s.maxArea}`);
}

/** The source's own size, each side floored to a multiple of `multiple` (diffusers' Kontext without auto-resize). */
function flooredSize(source: RgbImage, multiple: number): ImageSize {
  const width = Math.floor(source.width / multiple) * multiple;
  const height = Math.floor(source.height / multiple) * multiple;
  if (width <= 0 || height <= 0) {
    throw new FluxKontextError(
      `the input image is ${source.width}×${source.height}; it must be at least ${multiple}×${multiple} pixels`,
    );
  }
  return { width, height };
}

/** Python's round(): to the nearest integer, halves to the even one. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * FluxKontextPipeline's output size: `size` rescaled to `maxArea` pixels at its aspect ratio (Python round),
 * each side floored to a multiple of `multiple`.
 */
function fitToArea(size: ImageSize, maxArea: number, multiple: number): ImageSize {
  const aspect = size.width / size.height;
  const width = Math.floor(roundHalfEven(Math.sqrt(maxArea * aspect)) / multiple) * multiple;
  const height = Math.floor(roundHalfEven(Math.sqrt(maxArea / aspect)) / multiple) * multiple;
  if (width <= 0 || height <= 0) {
    throw new FluxKontextError(
      `maxArea ${maxArea} at aspect ${size.width}:${size.height} gives a ${width}×${height} output; ` +
        `each side must reach ${multiple} pixels`,
    );
  }
  return { width, height };
}

/**
 * Opens a FLUX.1-Kontext pipeline (local folder or cached Hub repo, diffusers or BFL transformer), checks its
 * weights against its configs, and returns an Editor. Settings start from the benchmark protocol (or the
 * rollout protocol with `preset: "rollout"`) and each option overrides one.
 */
export async function loadFluxKontext(options: LoadFluxKontextOptions): Promise<FluxKontextEditor> {
  const base = options.preset === "rollout" ? KONTEXT_ROLLOUT_SETTINGS : KONTEXT_BENCHMARK_SETTINGS;
  const settings: FluxKontextSettings = { ...base };
  for (const k of [
    "steps",
    "guidance",
    "sampler",
    "seed",
    "maxSequenceLength",
    "outputSize",
    "resolutions",
    "autoResize",
    "maxArea",
  ] as const) {
    if (options[k] !== undefined) (settings as unknown as Record<string, unknown>)[k] = options[k];
  }
  const scale = options.loraScale ?? 1;
  if (!Number.isFinite(scale) || scale < 0) throw new FluxKontextError(`loraScale must be ≥ 0, got ${scale}`);
  const model = await openFluxKontextModel(options.model, options);
  const lora =
    typeof options.lora === "string"
      ? await readLora(options.lora, {
          ...(options.loraAlpha !== undefined ? { alpha: options.loraAlpha } : {}),
        })
      : options.lora;
  const editor = new FluxKontextEditor(model, settings, {
    device: options.device,
    dtype: options.dtype,
    // A zero scale is the base model: drop the LoRA rather than multiply it by 0 on every call.
    lora: scale === 0 ? undefined : lora,
    loraScale: scale,
    truncateInstructions: options.truncateInstructions,
    threads: options.threads,
    attentionHeadChunk: options.attentionHeadChunk,
  });
  editor.checkWeights();
  return editor;
}

export interface EditImageOptions extends LoadFluxKontextOptions {
  /** The source image: a path or encoded bytes (PNG, JPEG, WebP…). */
  image: string | Uint8Array;
  instruction: string;
  /** Where to write the edited image as PNG. */
  out?: string;
}

/** One edit end to end (what `edit-r1 edit --adapter flux-kontext` runs): load, edit, write, close. */
export async function editImage(options: EditImageOptions): Promise<RgbImage> {
  let source: RgbImage;
  try {
    source = await decodeImage(options.image);
  } catch (e) {
    const what = typeof options.image === "string" ? options.image : `${options.image.length} bytes`;
    throw new FluxKontextError(
      `cannot decode the source image ${what}: ${(e as Error).message}; pass a PNG, JPEG or WebP file`,
    );
  }
  const editor = await loadFluxKontext(options);
  try {
    const [edited] = await editor.edit([{ key: "edit", instruction: options.instruction, source }]);
    if (options.out) await writeFile(options.out, await encodePng(edited!));
    return edited!;
  } finally {
    await editor.close();
  }
}
