import {
  checkLoraCoverage,
  checkRgbImage,
  editorLora,
  imageToTensor,
  type LoraFile,
  packLatents,
  requestNoise,
  resizeLikeDiffusers,
  tensorToImage,
  unpackLatents,
} from "@edit-r1/adapter-kit";
import {
  type Editor,
  type EditRequest,
  flowMatchSchedule,
  type RgbImage,
  requestSources,
  type Sampler,
  samplerByName,
  type VelocityFn,
} from "@edit-r1/core";
import { type Device, Graph, ops, type Session, SessionCache, type Tensor } from "@edit-r1/engine";
import {
  buildAutoencoderKLQwenImageDecoder,
  buildAutoencoderKLQwenImageEncoder,
  buildQwenImageEditVelocity,
  type ComputeDType,
  type QwenImageShape,
} from "@edit-r1/models";
import { PIPELINE_AREAS, type QwenImageEditAreas, qwenImageEditSizes } from "./image-sizes.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import type { QwenImageEditModel, QwenImageEditVariant } from "./qwen-image-edit-model.js";

/** Generation settings; every one is recorded in the editor's `protocol`. */
export interface QwenImageEditSettings extends QwenImageEditAreas {
  /** Sampler steps (diffusers' default 50; UniWorld-V2's evaluation 28; Edit-R1's rollouts 6). */
  steps: number;
  /** True classifier-free guidance when > 1 (diffusers' default 4; Edit-R1's rollouts 1, i.e. none). */
  trueCfgScale: number;
  /** The negative prompt of true CFG (diffusers' README and the authors' scripts: " "). */
  negativePrompt: string;
  /** "euler" (diffusers' FlowMatchEulerDiscreteScheduler), "dpm-solver++2m" (Edit-R1 rollouts) or "heun". */
  sampler: string;
  /** Noise seed; each request's noise is drawn from (seed, request key), so it does not depend on batching. */
  seed: number;
  /** "input" (default; from the (last) source at `outputArea`) or a fixed size (Edit-R1 trains at 512×512). */
  outputSize: "input" | { width: number; height: number };
  /**
   * Text tokens (after the dropped system block) are padded, with an attention mask, to a multiple of this, so
   * that prompts of similar length share one transformer session. Masked keys change nothing (exp(−1e9) is 0).
   */
  textBucket: number;
}

/** diffusers' defaults: 50 Euler steps, true CFG 4 with the negative prompt " ", 1024² areas. */
export const QWEN_EDIT_PIPELINE_SETTINGS: QwenImageEditSettings = {
  steps: 50,
  trueCfgScale: 4,
  negativePrompt: " ",
  sampler: "euler",
  seed: 42,
  outputSize: "input",
  textBucket: 64,
  ...PIPELINE_AREAS,
};

/** UniWorld-V2's (Edit-R1's) evaluation protocol on Qwen-Image-Edit-2509: the pipeline with 28 steps, seed 42. */
export const QWEN_EDIT_BENCHMARK_SETTINGS: QwenImageEditSettings = {
  ...QWEN_EDIT_PIPELINE_SETTINGS,
  steps: 28,
};

/**
 * Edit-R1's rollouts on Qwen-Image-Edit-2509: 6 DPM-Solver++(2M) steps, no CFG, a 512×512 output and the source
 * at 512² area for the VAE (the VLM still sees it at 384²).
 */
export const QWEN_EDIT_ROLLOUT_SETTINGS: QwenImageEditSettings = {
  ...QWEN_EDIT_PIPELINE_SETTINGS,
  steps: 6,
  trueCfgScale: 1,
  sampler: "dpm-solver++2m",
  seed: 0,
  outputSize: { width: 512, height: 512 },
  outputArea: 512 * 512,
  vaeImageArea: 512 * 512,
};

/** A prompt's conditioning for the transformer: Qwen2.5-VL hidden states [length, joint_attention_dim]. */
export interface TextCondition {
  hidden: Float32Array;
  /** Rows of `hidden`. */
  length: number;
  /** 1 = token, 0 = padding, per row; absent when every row is a token. */
  mask?: Float32Array | undefined;
}

/** The source images encoded for the transformer: packed latents of every source, in order. */
export interface SourceLatents {
  /** [Σ tokens, 4·z_dim]: each source's packed (normalised) VAE latents, concatenated. */
  packed: Float32Array;
  /** (1, h/2, w/2) per source: their img_shapes entries. */
  shapes: QwenImageShape[];
}

/** Everything one edit samples from: see `QwenImageEditEditor.prepare`. */
export interface PreparedQwenEdit {
  /** The starting noise as packed target tokens [N, 4·z_dim]. */
  noise: Float32Array;
  /** The sampler's sigmas, from 1 to the terminal 0. */
  sigmas: number[];
  /** The (guided) velocity of this editor's transformer, conditioned on the request. */
  velocity: VelocityFn;
  /** The output image size. */
  size: { width: number; height: number };
}

/** What turns an instruction and the source images (at their VLM size) into the transformer's text condition. */
export interface PromptEncoder {
  /** Hidden states of `prompt` with `images`, padded with a mask to a multiple of `bucket` rows. */
  encode(prompt: string, images: readonly RgbImage[], bucket: number): Promise<TextCondition>;
  /** Builds the encoder's graph at a tiny size, so weights that do not fit its config fail early. */
  checkWeights(): void;
  close(): Promise<void>;
}

export interface QwenImageEditEditorOptions {
  /** The prompt encoder (Qwen2.5-VL); without one, only `prepareFromEmbeddings` works. */
  prompts?: PromptEncoder | undefined;
  device?: Device | undefined;
  /** Compute dtype of the transformer and the VLM (default float32; the VAE stays float32). */
  dtype?: ComputeDType | undefined;
  lora?: LoraFile | undefined;
  /** Multiplies the LoRA's alpha/rank (default 1). */
  loraScale?: number | undefined;
  threads?: number | undefined;
  /** Heads per attention chunk in the transformer (default: all heads at once). */
  attentionHeadChunk?: number | undefined;
}

/**
 * A Qwen-Image-Edit editor (v1, 2509, 2511): instruction + source image(s) → edited image, as diffusers'
 * QwenImageEditPipeline / QwenImageEditPlusPipeline compute it, with sessions cached per shape.
 */
export class QwenImageEditEditor implements Editor {
  readonly name = "qwen-image-edit";
  readonly protocol: Record<string, unknown>;
  private readonly sessions: SessionCache;
  private readonly sampler: Sampler;
  /** The LoRA (if any) as the velocity graphs take it: builder options and the factors' feeds. */
  private readonly lora: ReturnType<typeof editorLora>;
  private readonly prompts: PromptEncoder | undefined;
  /** Pixels per latent cell: 2^(number of temporal-downsample stages) = 8. */
  readonly vaeScale: number;
  private closed = false;

  constructor(
    readonly model: QwenImageEditModel,
    readonly settings: QwenImageEditSettings,
    private readonly options: QwenImageEditEditorOptions = {},
  ) {
    checkSettings(settings);
    this.sessions = new SessionCache({ device: options.device, threads: options.threads });
    this.sampler = samplerByName(settings.sampler);
    this.vaeScale = 2 ** (model.vae.config.dimMult.length - 1);
    const packed = model.vae.config.zDim * 4;
    if (model.transformer.config.inChannels !== packed) {
      throw new QwenImageEditError(
        `the transformer takes ${model.transformer.config.inChannels} channels per token but the VAE's ` +
          `${model.vae.config.zDim} latent channels pack to ${packed}; the transformer and VAE are from different models`,
      );
    }
    const lora = options.lora;
    this.lora = editorLora(lora, options.loraScale);
    this.prompts = options.prompts;
    this.protocol = {
      adapter: "qwen-image-edit",
      model: model.dir,
      variant: model.variant,
      ...settings,
      dtype: options.dtype ?? "float32",
      lora: lora ? { rank: lora.rank, alpha: lora.alpha, modules: lora.modules.length } : null,
      loraScale: lora ? (options.loraScale ?? 1) : null,
    };
  }

  /** Most source images one request may have: 1 for v1, 3 for the Plus pipeline (what 2509 was trained on). */
  get maxSources(): number {
    return maxSourcesOf(this.model.variant);
  }

  async edit(requests: readonly EditRequest[]): Promise<RgbImage[]> {
    const out: RgbImage[] = [];
    for (const r of requests) {
      const prepared = await this.prepare(r);
      const { x0 } = await this.sampler.sample(prepared.noise, prepared.sigmas, prepared.velocity);
      out.push(await this.decodeLatents(x0, prepared.size));
    }
    return out;
  }

  /** Releases every session. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.sessions.close(), this.prompts?.close()]);
  }

  /** Builds every component's graph once at a small size, so weights that do not fit the configs fail now. */
  checkWeights(): void {
    const { vae } = this.model;
    const f = this.vaeScale;
    const g = new Graph("check_qwen_image_edit");
    buildAutoencoderKLQwenImageEncoder(
      g,
      vae.config,
      vae.weights,
      g.input("x", "float32", [1, 3, 1, 2 * f, 2 * f]),
    );
    buildAutoencoderKLQwenImageDecoder(
      g,
      vae.config,
      vae.weights,
      g.input("z", "float32", [1, vae.config.zDim, 1, 2, 2]),
    );
    this.transformerGraph([[1, 1, 1]], 1, true);
    this.prompts?.checkWeights();
  }

  /**
   * Everything an edit samples from: the sizes (diffusers' rules), the prompt and negative prompt encoded
   * with the source images, the sources' latents, the noise and schedule, and the guided velocity.
   */
  async prepare(request: EditRequest): Promise<PreparedQwenEdit> {
    if (this.closed) throw new QwenImageEditError("edit: this editor was closed; load the model again");
    const sources = requestSources(request);
    if (sources.length > this.maxSources) {
      throw new QwenImageEditError(
        `request "${request.key}" has ${sources.length} source images; ` +
          (this.model.variant === "edit"
            ? "Qwen-Image-Edit (v1) takes one — use Qwen-Image-Edit-2509 or -2511 for several"
            : `Qwen-Image-Edit-2509/2511 take at most ${this.maxSources}`),
      );
    }
    const sizes = this.sizesOf(sources);
    const condition = sources.map((s, i) =>
      resizeLikeDiffusers(s, sizes.condition[i]!.width, sizes.condition[i]!.height),
    );
    const s = this.settings;
    const prompt = await this.encodePrompt(request.instruction, condition);
    const negative = s.trueCfgScale > 1 ? await this.encodePrompt(s.negativePrompt, condition) : undefined;
    const channels = this.model.vae.config.zDim;
    const h = sizes.output.height / this.vaeScale;
    const w = sizes.output.width / this.vaeScale;
    const noise = packLatents(
      requestNoise(s.seed, "qwen-image-edit", request.key, channels * h * w),
      channels,
      h,
      w,
    );
    return this.prepareFromEmbeddings({ sources, prompt, negative, noise });
  }

  /**
   * A prompt's text condition: the edit template with `images` (already at their VLM size) through Qwen2.5-VL,
   * without the system block, padded with a mask to a multiple of `textBucket` rows.
   */
  encodePrompt(prompt: string, images: readonly RgbImage[]): Promise<TextCondition> {
    if (!this.prompts) {
      throw new QwenImageEditError(
        "this editor has no prompt encoder (load it with loadQwenImageEdit), or give prompt embeddings to prepareFromEmbeddings",
      );
    }
    return this.prompts.encode(prompt, images, this.settings.textBucket);
  }

  /**
   * The diffusers pipeline from given prompt embeddings on (its `prompt_embeds` path): sources resized and
   * VAE-encoded, the schedule for the output's token count, and the velocity with true CFG when a negative is
   * given and trueCfgScale > 1. `noise` is the packed starting latent (diffusers' `latents`).
   */
  async prepareFromEmbeddings(input: {
    sources: readonly RgbImage[];
    prompt: TextCondition;
    negative?: TextCondition | undefined;
    noise: Float32Array;
  }): Promise<PreparedQwenEdit> {
    const sizes = this.sizesOf(input.sources);
    const latents = await this.encodeSources(input.sources, sizes.vae);
    const h = sizes.output.height / this.vaeScale;
    const w = sizes.output.width / this.vaeScale;
    const targetShape: QwenImageShape = [1, h / 2, w / 2];
    const targetTokens = (h / 2) * (w / 2);
    const packed = this.model.transformer.config.inChannels;
    if (input.noise.length !== targetTokens * packed) {
      throw new QwenImageEditError(
        `the starting latents have ${input.noise.length} values; a ${sizes.output.width}×${sizes.output.height} ` +
          `output needs ${targetTokens} tokens × ${packed}`,
      );
    }
    const { sigmas } = flowMatchSchedule(this.model.scheduler, {
      numSteps: this.settings.steps,
      imageSeqLen: targetTokens,
    });
    const shapes = [targetShape, ...latents.shapes];
    const branch = async (text: TextCondition) => {
      const session = await this.transformerSession(shapes, text.length, text.mask !== undefined);
      const fixed: Record<string, Float32Array> = {
        image_latents: latents.packed,
        encoder_hidden_states: text.hidden,
        ...(text.mask ? { encoder_hidden_states_mask: text.mask } : {}),
        ...this.lora.feeds,
      };
      return async (x: Float32Array, sigma: number) => {
        // diffusers passes timesteps (σ·1000 in fp32) divided by 1000 again.
        const t = Math.fround(Math.fround(sigma * 1000) / 1000);
        const out = await session.run({ latents: x, timestep: Float32Array.of(t), ...fixed });
        return out.velocity as Float32Array;
      };
    };
    const cond = await branch(input.prompt);
    const scale = this.settings.trueCfgScale;
    const uncond = scale > 1 && input.negative ? await branch(input.negative) : undefined;
    const velocity: VelocityFn = async (x, sigma) => {
      const v = await cond(x, sigma);
      return uncond ? guide(v, await uncond(x, sigma), scale, packed) : v;
    };
    return { noise: input.noise, sigmas, velocity, size: sizes.output };
  }

  /** The sizes of the output, the VAE images and the VLM images for these sources. */
  sizesOf(sources: readonly RgbImage[]) {
    if (sources.length === 0) throw new QwenImageEditError("an edit needs at least one source image");
    for (const [i, source] of sources.entries()) checkRgbImage(source, `source image ${i + 1}`);
    const s = this.settings;
    return qwenImageEditSizes(
      this.model.variant,
      sources,
      s,
      this.vaeScale,
      s.outputSize === "input" ? undefined : s.outputSize,
    );
  }

  /**
   * Each source resized (Pillow LANCZOS) to its VAE size, encoded to its posterior mean (argmax), normalised
   * per channel ((z − mean)/std) and 2×2-packed; concatenated in source order.
   */
  async encodeSources(
    sources: readonly RgbImage[],
    sizes: readonly { width: number; height: number }[],
  ): Promise<SourceLatents> {
    const parts: Float32Array[] = [];
    const shapes: QwenImageShape[] = [];
    const channels = this.model.vae.config.zDim;
    for (let i = 0; i < sources.length; i++) {
      const { width, height } = sizes[i]!;
      const image = resizeLikeDiffusers(sources[i]!, width, height);
      const session = await this.cached(`vae-encode:${width}x${height}`, () =>
        this.encoderGraph(width, height),
      );
      const z = (await session.run({ image: imageToTensor(image) })).latent as Float32Array;
      const h = height / this.vaeScale;
      const w = width / this.vaeScale;
      parts.push(packLatents(z, channels, h, w));
      shapes.push([1, h / 2, w / 2]);
    }
    const packed = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      packed.set(p, offset);
      offset += p.length;
    }
    return { packed, shapes };
  }

  /** Packed target tokens of one sample → the decoded image as CHW floats in [0, 1] (diffusers' "np" output). */
  async decodeToFloats(packed: Float32Array, size: { width: number; height: number }): Promise<Float32Array> {
    const { config } = this.model.vae;
    const h = size.height / this.vaeScale;
    const w = size.width / this.vaeScale;
    const session = await this.cached(`vae-decode:${h}x${w}`, () => {
      const g = new Graph("qwen_vae_decode");
      const z = g.input("latent", "float32", [1, config.zDim, 1, h, w]);
      // diffusers: latents / (1/std) + mean, per channel.
      const std = g.constant(
        Float32Array.from(config.latentsStd, (s) => 1 / s),
        [1, config.zDim, 1, 1, 1],
      );
      const mean = g.constant(Float32Array.from(config.latentsMean), [1, config.zDim, 1, 1, 1]);
      const x = buildAutoencoderKLQwenImageDecoder(
        g,
        config,
        this.model.vae.weights,
        ops.add(ops.div(z, std), mean),
      );
      // [−1, 1] → [0, 1], clamped as diffusers' postprocess does.
      const img = ops.minimum(ops.maximum(ops.add(ops.div(x, 2), 0.5), 0), 1);
      return { g, outputs: { image: img } };
    });
    return (await session.run({ latent: unpackLatents(packed, config.zDim, h, w) })).image as Float32Array;
  }

  /** Packed target tokens of one sample → the decoded RGB image. */
  async decodeLatents(packed: Float32Array, size: { width: number; height: number }): Promise<RgbImage> {
    return tensorToImage(await this.decodeToFloats(packed, size), size.width, size.height);
  }

  private encoderGraph(width: number, height: number) {
    const { config, weights } = this.model.vae;
    const g = new Graph("qwen_vae_encode");
    const x = g.input("image", "float32", [1, 3, 1, height, width]);
    const mean = buildAutoencoderKLQwenImageEncoder(g, config, weights, x);
    const shape = [1, config.zDim, 1, 1, 1];
    const mu = g.constant(Float32Array.from(config.latentsMean), shape);
    const std = g.constant(Float32Array.from(config.latentsStd), shape);
    return { g, outputs: { latent: ops.div(ops.sub(mean, mu), std) } };
  }

  private transformerSession(
    shapes: readonly QwenImageShape[],
    textTokens: number,
    masked: boolean,
  ): Promise<Session> {
    const key = `transformer:${shapes.map((s) => s.join("x")).join(",")}:${textTokens}:${masked ? "mask" : "full"}`;
    return this.cached(key, () => this.transformerGraph(shapes, textTokens, masked));
  }

  /**
   * The velocity graph of one sample: the noisy target tokens, then every source's latent tokens, through the
   * transformer with img_shapes [target, ...sources]; only the target tokens' output is kept.
   */
  private transformerGraph(shapes: readonly QwenImageShape[], textTokens: number, masked: boolean) {
    const { config } = this.model.transformer;
    const g = new Graph("qwen_image_edit_velocity");
    const [target, ...sources] = shapes.map(([f, h, w]) => f * h * w);
    const sourceTokens = sources.reduce((a, b) => a + b, 0);
    const lora = this.options.lora;
    const { velocity, lora: factors } = buildQwenImageEditVelocity(
      g,
      this.model.transformer,
      {
        latents: g.input("latents", "float32", [1, target!, config.inChannels]),
        sources: g.input("image_latents", "float32", [1, sourceTokens, config.inChannels]),
        text: g.input("encoder_hidden_states", "float32", [1, textTokens, config.jointAttentionDim]),
        textMask: masked ? g.input("encoder_hidden_states_mask", "float32", [1, textTokens]) : undefined,
        timestep: g.input("timestep", "float32", [1]),
      },
      {
        imgShapes: shapes,
        dtype: this.options.dtype,
        lora: this.lora.options,
        attentionHeadChunk: this.options.attentionHeadChunk,
      },
    );
    // Every module and factor shape of the file against the graph's, before a feed could fail on one.
    if (lora)
      checkLoraCoverage(lora, Object.fromEntries(factors.map((p) => [p.key, p.input.shape])), "Qwen-Image");
    return { g, outputs: { velocity } };
  }

  private cached(key: string, build: () => { g: Graph; outputs: Record<string, Tensor> }): Promise<Session> {
    return this.sessions.get(key, () => {
      const { g, outputs } = build();
      return { graph: g, outputs };
    });
  }
}

/**
 * Source images per request: QwenImageEditPipeline (v1) takes one; the Plus pipeline takes a list, and 2509 was
 * trained and documented for 1 to 3.
 */
export function maxSourcesOf(variant: QwenImageEditVariant): number {
  return variant === "edit" ? 1 : 3;
}

/**
 * diffusers' true CFG with norm rescale, per token: comb = neg + s·(pos − neg), rescaled to ‖pos‖ over the
 * token's `width` channels.
 */
export function guide(pos: Float32Array, neg: Float32Array, scale: number, width: number): Float32Array {
  const out = new Float32Array(pos.length);
  const f = Math.fround;
  for (let t = 0; t < pos.length; t += width) {
    let pp = 0;
    let cc = 0;
    for (let k = t; k < t + width; k++) {
      const c = f(neg[k]! + f(scale * f(pos[k]! - neg[k]!)));
      out[k] = c;
      pp += pos[k]! * pos[k]!;
      cc += c * c;
    }
    const ratio = f(f(Math.sqrt(pp)) / f(Math.sqrt(cc)));
    for (let k = t; k < t + width; k++) out[k] = f(out[k]! * ratio);
  }
  return out;
}

function checkSettings(s: QwenImageEditSettings): void {
  const positiveInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1)
      throw new QwenImageEditError(`${name} must be a positive integer, got ${v}`);
  };
  positiveInt("steps", s.steps);
  positiveInt("textBucket", s.textBucket);
  if (!Number.isFinite(s.trueCfgScale) || s.trueCfgScale < 0)
    throw new QwenImageEditError(`trueCfgScale must be ≥ 0, got ${s.trueCfgScale}`);
  for (const k of ["outputArea", "vaeImageArea", "conditionImageArea"] as const) {
    if (!Number.isFinite(s[k]) || s[k] < 32 * 32)
      throw new QwenImageEditError(`${k} must be at least 32·32 pixels, got ${s[k]}`);
  }
}
