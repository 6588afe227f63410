import { ConfigError } from "./errors.js";
import type { TrainablePolicy } from "./trainable-policy.js";
import type { TrainConfigInput } from "./trainer.js";
import { type Editor, INTERFACE_VERSION } from "./types.js";

export type Device = "cpu" | "cuda";

/** What an adapter can do, declared up front so bad combinations fail at configuration time. */
export interface AdapterCapabilities {
  /** How the base model is guided: not at all, a distilled guidance embedding (FLUX), or true CFG (Qwen). */
  guidance: "none" | "distilled" | "cfg";
  /** Image sizes it accepts, as [width, height], or "any" (it resizes). */
  resolutions: readonly (readonly [number, number])[] | "any";
  /** Module names LoRA attaches to (PEFT target_modules). */
  loraTargets: readonly string[];
  /** Weight dtypes it loads. */
  weightDtypes: readonly string[];
  devices: readonly Device[];
  /** Whether `loadPolicy` exists (the trainer needs it). */
  trainable: boolean;
}

export interface AdapterLoadOptions {
  /** A local folder or a Hub repo id; the adapter's default repo when omitted. */
  model?: string;
  device?: Device;
  /** A PEFT/diffusers LoRA file or folder to apply. */
  lora?: string;
  loraScale?: number;
  /** Seed for generation noise (benchmarks pin it in their protocol). */
  seed?: number;
  /** Sampler steps for editing (benchmarks pin it). */
  steps?: number;
}

/**
 * A base model: loads an Editor (for benchmarks and `edit-r1 edit`) and, when trainable, a TrainablePolicy
 * (for `edit-r1 train`). A new base model is one package exporting an Adapter; nothing in core changes.
 */
export interface Adapter {
  readonly name: string;
  /** The INTERFACE_VERSION the adapter was built against. */
  readonly interfaceVersion: number;
  readonly capabilities: AdapterCapabilities;
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

/** Rejects what an adapter declared it cannot do, naming the adapter, the option and what is supported. */
export function checkAdapter(
  adapter: Adapter,
  options: AdapterLoadOptions = {},
  purpose: "edit" | "train" = "edit",
) {
  if (adapter.interfaceVersion !== INTERFACE_VERSION) {
    throw new ConfigError(
      `adapter "${adapter.name}" was built for core interface version ${adapter.interfaceVersion}, this core is ` +
        `version ${INTERFACE_VERSION}: install matching versions of @edit-r1/core and the adapter.`,
    );
  }
  const device = options.device ?? "cpu";
  if (!adapter.capabilities.devices.includes(device)) {
    throw new ConfigError(
      `adapter "${adapter.name}" does not run on device "${device}"; it supports ${adapter.capabilities.devices.join(", ")}.`,
    );
  }
  if (purpose === "train" && (!adapter.capabilities.trainable || !adapter.loadPolicy)) {
    throw new ConfigError(
      `adapter "${adapter.name}" cannot be trained yet (it provides no policy); use it for edit/bench.`,
    );
  }
  if (options.loraScale !== undefined && !(Number.isFinite(options.loraScale) && options.loraScale >= 0)) {
    throw new ConfigError(`--lora-scale must be a non-negative number, got ${options.loraScale}.`);
  }
}
