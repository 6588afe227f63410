import { ConfigError } from "./errors.js";
import type { TrainablePolicy } from "./trainable-policy.js";
import type { TrainConfigInput } from "./trainer.js";
import { type Editor, INTERFACE_VERSION } from "./types.js";

export type Device = "cpu" | "cuda" | "webgpu";

/** Compute dtypes an adapter's transformer can run in (weights of other dtypes are cast inside the graph). */
export type ComputeDtype = "float32" | "float16" | "bfloat16";

/** What an adapter can do, declared up front so bad combinations fail at configuration time (`checkAdapter`). */
export interface AdapterCapabilities {
  /** How the base model is guided: not at all, a distilled guidance embedding (FLUX), or true CFG (Qwen). */
  guidance: "none" | "distilled" | "cfg";
  /** Output sizes it accepts, as [width, height], or "any" (it resizes). */
  resolutions: readonly (readonly [number, number])[] | "any";
  /** Source images one edit may take (`EditRequest.sources`): 1 for most models, 3 for Qwen-Image-Edit-2509. */
  maxSourceImages: number;
  /** Module names LoRA may attach to (PEFT target_modules); a trained LoRA's targets must be among them. */
  loraTargets: readonly string[];
  /** Compute dtypes the transformer runs in. */
  dtypes: readonly ComputeDtype[];
  devices: readonly Device[];
  /** Whether `loadPolicy` exists (the trainer needs it). */
  trainable: boolean;
  /**
   * For an adapter layered over several base models (UniWorld: Edit-R1 LoRAs on Qwen-Image-Edit or
   * FLUX-Kontext), the bases `AdapterLoadOptions.base` may name, the default first. Absent: one base, and
   * `base` is refused.
   */
  bases?: readonly string[];
  /** The adapter applies a LoRA of its own when none is given (a released one), so `loraScale` alone is valid. */
  builtInLora?: boolean;
  /** Its training graph can checkpoint per transformer block (`AdapterLoadOptions.recompute`, --recompute). */
  recompute?: boolean;
  /**
   * Its editor's and policy's graphs can compute attention a few heads at a time
   * (`AdapterLoadOptions.attentionHeadChunk`, --attention-chunk on edit, bench, train and plan).
   */
  attentionHeadChunk?: boolean;
}

export interface AdapterLoadOptions {
  /** A local folder or a Hub repo id; the adapter's default repo when omitted. */
  model?: string;
  device?: Device;
  /** Compute dtype of the transformer (default float32). */
  dtype?: ComputeDtype;
  /** A PEFT/diffusers LoRA file or folder: applied when editing, the starting θ when training. */
  lora?: string;
  /** Multiplies the LoRA's alpha/rank when editing (default 1). Training starts from the factors as stored. */
  loraScale?: number;
  /**
   * The LoRA's lora_alpha when its files do not give one (a PEFT `adapter_model.safetensors` whose
   * `adapter_config.json` is missing, with no `.alpha` tensors); without it such a LoRA is refused (--lora-alpha).
   */
  loraAlpha?: number;
  /** Seed of each request's starting noise (benchmarks pin it in their protocol). */
  noiseSeed?: number;
  /** Seed of a fresh LoRA's initialisation (training). */
  initSeed?: number;
  /** Sampler steps (editing: the benchmark protocol's; training: the rollouts'). */
  steps?: number;
  /** Guidance scale: FLUX's distilled guidance, or the true-CFG scale. Rejected by adapters without guidance. */
  guidance?: number;
  /** Output (training: rollout bucket) size; must be one of the adapter's resolutions. */
  resolution?: readonly [number, number];
  /** The trainable LoRA (training only): rank, alpha, and target modules among the adapter's loraTargets. */
  loraConfig?: { rank?: number; alpha?: number; targets?: readonly string[] };
  /** Which base model, for adapters that declare `capabilities.bases` (--base). */
  base?: string;
  /**
   * Gradient checkpointing per transformer block in the fused training graph (training only; adapters that
   * declare `capabilities.recompute`): each block's interior is recomputed in the backward pass instead of
   * kept, so the activation peak is about one block's instead of every block's, for one more forward.
   */
  recompute?: boolean;
  /**
   * Heads per attention chunk in the editor's transformer and the policy's rollout and training graphs (adapters
   * that declare `capabilities.attentionHeadChunk`): attention runs over that many heads at a time, so one
   * chunk's score matrix is alive instead of every head's (the memory peak of an edit or a rollout at high
   * resolution), and in training each chunk's scores are recomputed in its own backward. Same results; a few
   * more, smaller kernels.
   */
  attentionHeadChunk?: number;
}

/** What the command line needs to know about an adapter, so adding one touches no command code. */
export interface AdapterCli {
  /** One line for `edit-r1 --help`. */
  description: string;
  /**
   * What the model takes, for `edit-r1 adapters` and `edit-r1 edit --help --adapter <name>`: image sizes, how
   * other sizes are handled, the words it understands (a closed vocabulary), … One or more lines.
   */
  inputs?: string;
  /** The Hub repository loaded when no --model is given (absent: the weights ship with the package). */
  defaultRepo?: string;
  /** The files of `defaultRepo` that `edit-r1 download --adapter <name>` fetches (glob patterns). */
  downloadPatterns?: readonly string[];
  /**
   * Writes a tiny random-weight checkpoint of this model into `dir` (`edit-r1 replica`): the same files, key
   * names and configs as the real one, in the same layout that `loadEditor` / `loadPolicy({ model: dir })` read,
   * with small sizes, so an install is smoke-tested without downloading the real weights. The weights depend
   * only on `options.seed` (default 0). `dir` may not exist yet; the command writes into a fresh folder and
   * moves it into place, so the method need not be atomic itself.
   */
  writeReplica?(dir: string, options: { seed?: number; base?: string }): Promise<void>;
  /**
   * What `edit-r1 download --adapter <name> [--base b]` fetches when it is more than `defaultRepo` (e.g. a base
   * model and a LoRA): repositories with the glob patterns of their files. Replaces defaultRepo/downloadPatterns
   * there.
   */
  downloads?(options: { base?: string }): readonly { repo: string; patterns?: readonly string[] }[];
  /**
   * The trainable policy `loadPolicy(options)` would make for the full-size model, built on the checkpoint's
   * tensor shapes shipped with the adapter instead of its weights, so `edit-r1 plan` answers without a
   * download. Its graphs can be built and planned, never run. `recompute`: gradient checkpointing per
   * transformer block in the graphs.
   */
  loadShapePolicy?(options: AdapterLoadOptions): Promise<TrainablePolicy>;
}

/**
 * A base model: loads an Editor (for benchmarks and `edit-r1 edit`) and, when trainable, a TrainablePolicy
 * (for `edit-r1 train`). A new base model is one package exporting an Adapter as `adapter`; nothing in core
 * changes.
 */
export interface Adapter {
  readonly name: string;
  /** The INTERFACE_VERSION the adapter was built against. */
  readonly interfaceVersion: number;
  readonly capabilities: AdapterCapabilities;
  readonly cli: AdapterCli;
  loadEditor(options?: AdapterLoadOptions): Promise<Editor>;
  loadPolicy?(options?: AdapterLoadOptions): Promise<TrainablePolicy>;
  /** What `edit-r1 train` uses when the user gives no flag: settings sized for this model, a reward spec, etc. */
  readonly trainDefaults?: AdapterTrainDefaults;
}

export interface AdapterTrainDefaults {
  config?: TrainConfigInput;
  /** Reward spec (see @edit-r1/rewards' createRewardFromSpec). */
  reward?: string;
  /** Sampler for rollouts (samplerByName). */
  sampler?: string;
  /** Benchmark run before and after training. */
  benchmark?: string;
  /** Writes a default Edit-R1 JSONL training set into `dir` and returns its path (embedded defaults only). */
  writeTrainData?(dir: string): Promise<string>;
}

/**
 * Rejects what an adapter declared it cannot do, and option values no adapter can use, naming the adapter,
 * the option and what is supported. Every field of AdapterCapabilities is checked here.
 */
export function checkAdapter(
  adapter: Adapter,
  options: AdapterLoadOptions = {},
  purpose: "edit" | "train" = "edit",
): void {
  const name = `adapter "${adapter.name}"`;
  const caps = adapter.capabilities;
  if (adapter.interfaceVersion !== INTERFACE_VERSION) {
    throw new ConfigError(
      `${name} was built for core interface version ${adapter.interfaceVersion}, this core is ` +
        `version ${INTERFACE_VERSION}: install matching versions of @edit-r1/core and the adapter.`,
    );
  }
  if (adapter.cli.writeReplica !== undefined && typeof adapter.cli.writeReplica !== "function")
    throw new ConfigError(
      `${name}: cli.writeReplica must be a function (dir, { seed }) => Promise<void>, got ${typeof adapter.cli.writeReplica}.`,
    );
  if (options.base !== undefined) {
    if (!caps.bases)
      throw new ConfigError(
        `${name} has one base model; --base is for adapters layered over several (e.g. uniworld).`,
      );
    if (!caps.bases.includes(options.base))
      throw new ConfigError(`${name} has no base "${options.base}"; choose one of ${caps.bases.join(", ")}.`);
  }
  const device = options.device ?? "cpu";
  if (!caps.devices.includes(device))
    throw new ConfigError(
      `${name} does not run on device "${device}"; it supports ${caps.devices.join(", ")}.`,
    );
  const dtype = options.dtype ?? "float32";
  if (!caps.dtypes.includes(dtype))
    throw new ConfigError(`${name} does not compute in ${dtype}; it supports ${caps.dtypes.join(", ")}.`);
  if (purpose === "train" && (!caps.trainable || !adapter.loadPolicy))
    throw new ConfigError(`${name} cannot be trained yet (it provides no policy); use it for edit/bench.`);
  if (options.guidance !== undefined) {
    if (caps.guidance === "none")
      throw new ConfigError(`${name} has no guidance; drop the guidance option (--guidance).`);
    if (!(Number.isFinite(options.guidance) && options.guidance >= 0))
      throw new ConfigError(`${name}: guidance must be a number ≥ 0, got ${options.guidance}.`);
  }
  if (options.resolution !== undefined) {
    const [w, h] = options.resolution;
    if (!(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0))
      throw new ConfigError(`${name}: resolution must be two positive integers, got ${w}×${h}.`);
    if (caps.resolutions !== "any" && !caps.resolutions.some(([rw, rh]) => rw === w && rh === h)) {
      const list = caps.resolutions.slice(0, 6).map(([a, b]) => `${a}×${b}`);
      throw new ConfigError(
        `${name} does not generate ${w}×${h}; it supports ${list.join(", ")}${caps.resolutions.length > 6 ? ", …" : ""}.`,
      );
    }
  }
  if (options.loraScale !== undefined && !(Number.isFinite(options.loraScale) && options.loraScale >= 0))
    throw new ConfigError(`${name}: --lora-scale must be a non-negative number, got ${options.loraScale}.`);
  if (options.loraScale !== undefined && options.lora === undefined && !caps.builtInLora)
    throw new ConfigError(
      `${name}: --lora-scale ${options.loraScale} was given without --lora; name the LoRA.`,
    );
  if (options.loraAlpha !== undefined) {
    if (!(Number.isFinite(options.loraAlpha) && options.loraAlpha > 0))
      throw new ConfigError(`${name}: --lora-alpha must be a positive number, got ${options.loraAlpha}.`);
    if (options.lora === undefined && !caps.builtInLora)
      throw new ConfigError(
        `${name}: --lora-alpha ${options.loraAlpha} was given without --lora; name the LoRA it belongs to.`,
      );
  }
  if (options.recompute) {
    if (purpose !== "train")
      throw new ConfigError(`${name}: gradient checkpointing (--recompute) is a training option.`);
    if (!caps.recompute)
      throw new ConfigError(`${name} cannot checkpoint its training graph per block; drop --recompute.`);
  }
  if (options.attentionHeadChunk !== undefined) {
    if (!(Number.isInteger(options.attentionHeadChunk) && options.attentionHeadChunk >= 1))
      throw new ConfigError(
        `${name}: --attention-chunk must be a whole number of heads ≥ 1, got ${options.attentionHeadChunk}.`,
      );
    if (!caps.attentionHeadChunk)
      throw new ConfigError(`${name} cannot chunk its attention by heads; drop --attention-chunk.`);
  }
  if (purpose === "train" && options.loraScale !== undefined && options.loraScale !== 1)
    throw new ConfigError(
      `${name}: --lora-scale ${options.loraScale} cannot be used for training; training starts from the LoRA's ` +
        "factors as stored (drop --lora-scale, or rescale the LoRA's lora_B first).",
    );
  for (const key of ["noiseSeed", "initSeed"] as const) {
    const v = options[key];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0))
      throw new ConfigError(`${name}: ${key} must be a non-negative integer, got ${v}.`);
  }
  if (options.steps !== undefined && !(Number.isInteger(options.steps) && options.steps >= 1))
    throw new ConfigError(`${name}: steps must be a positive integer, got ${options.steps}.`);
  const lora = options.loraConfig;
  if (lora !== undefined) {
    if (purpose !== "train")
      throw new ConfigError(`${name}: a LoRA configuration (rank, alpha, targets) is a training option.`);
    if (options.lora !== undefined)
      throw new ConfigError(
        `${name}: give either a LoRA to start from (--lora) or a fresh LoRA's configuration, not both; ` +
          "a loaded LoRA keeps its own rank, alpha and targets.",
      );
    if (lora.rank !== undefined && !(Number.isInteger(lora.rank) && lora.rank >= 1))
      throw new ConfigError(`${name}: LoRA rank must be a positive integer, got ${lora.rank}.`);
    if (lora.alpha !== undefined && !(Number.isFinite(lora.alpha) && lora.alpha > 0))
      throw new ConfigError(`${name}: LoRA alpha must be positive, got ${lora.alpha}.`);
    const unknown = (lora.targets ?? []).filter((t) => !caps.loraTargets.includes(t));
    if (unknown.length)
      throw new ConfigError(
        `${name} cannot put LoRA on ${unknown.map((t) => JSON.stringify(t)).join(", ")}; ` +
          `its LoRA targets are ${caps.loraTargets.join(", ")}.`,
      );
  }
}
