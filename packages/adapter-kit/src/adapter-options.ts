import type { Device } from "@edit-r1/engine";
import { type ComputeDType, EDIT_R1_LORA_TARGETS, type LoraOptions } from "@edit-r1/models";
import type { GraphPolicyOptions } from "./graph-policy.js";
import { type LoraFile, readLora } from "./lora-file.js";

/**
 * The option plumbing every graph-policy adapter repeats between its own load options, the kit's
 * GraphPolicyOptions, and an editor that applies a loaded LoRA.
 */

/** Training options a graph-policy adapter's `load…Policy` takes besides its model wiring. */
export interface PolicyTrainingOptions {
  /** The trainable LoRA (default r 32, α 64 on EDIT_R1_LORA_TARGETS, as Edit-R1). Ignored with `initialLora`. */
  lora?: { rank?: number; alpha?: number; targets?: readonly string[] };
  /** Start θ from this LoRA (a PEFT folder, a .safetensors file, or one loaded) instead of PEFT's init. */
  initialLora?: string | LoraFile;
  /** `initialLora`'s lora_alpha when its files give none (a PEFT folder without adapter_config.json). */
  initialLoraAlpha?: number;
  /** Seed of the LoRA A initialisation (default 0). */
  initSeed?: number;
  device?: Device;
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /** Gradient checkpointing of v_θ in the fused training graph. */
  recompute?: boolean;
  /**
   * Heads per attention chunk in the transformer's graphs (core `AdapterLoadOptions.attentionHeadChunk`); the
   * adapter passes it to its model builder. Undefined: all heads at once.
   */
  attentionHeadChunk?: number;
  /** Requests whose conditions are kept, least recently used dropped first (default 256). */
  conditionCacheSize?: number;
}

/** How a resolution bucket builds its transformer: what the FLUX and Qwen-Image builders both take. */
export interface TransformerGraphOptions {
  dtype?: ComputeDType | undefined;
  /** Gradient checkpointing per transformer block (each block's interior recomputed in the backward pass). */
  recompute?: boolean | undefined;
  /** Heads per attention chunk (undefined: all heads at once). */
  attentionHeadChunk?: number | undefined;
}

/** `options` as a transformer builder's options: the set fields only (recompute only when on). */
export function transformerGraphOptions(options: TransformerGraphOptions): {
  dtype?: ComputeDType;
  recompute?: true;
  attentionHeadChunk?: number;
} {
  return {
    ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
    ...(options.recompute ? { recompute: true as const } : {}),
    ...(options.attentionHeadChunk !== undefined ? { attentionHeadChunk: options.attentionHeadChunk } : {}),
  };
}

/** GraphPolicyOptions from an adapter's training options, with the initial LoRA read from its path. */
export async function graphPolicyOptions(o: PolicyTrainingOptions): Promise<GraphPolicyOptions> {
  const initialLora =
    typeof o.initialLora === "string"
      ? await readLora(o.initialLora, o.initialLoraAlpha !== undefined ? { alpha: o.initialLoraAlpha } : {})
      : o.initialLora;
  return {
    lora: {
      rank: o.lora?.rank ?? 32,
      alpha: o.lora?.alpha ?? 64,
      targets: o.lora?.targets ?? EDIT_R1_LORA_TARGETS,
    },
    ...(initialLora ? { initialLora } : {}),
    ...(typeof o.initialLora === "string" ? { initialLoraPath: o.initialLora } : {}),
    initSeed: o.initSeed ?? 0,
    ...(o.device ? { device: o.device } : {}),
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.recompute ? { recompute: true } : {}),
    ...(o.conditionCacheSize !== undefined ? { conditionCacheSize: o.conditionCacheSize } : {}),
  };
}

/**
 * What core's AdapterLoadOptions give every graph-policy adapter's policy alike: the starting LoRA (and its
 * alpha), a fresh LoRA's configuration (`loraConfig`, else the adapter's default), the init seed, the
 * rollout bucket as { width, height } (else the adapter's default), and the heads per attention chunk.
 */
export function policyTrainingOptions(
  o: {
    lora?: string;
    loraAlpha?: number;
    loraConfig?: PolicyTrainingOptions["lora"];
    initSeed?: number;
    resolution?: readonly [number, number];
    attentionHeadChunk?: number;
  },
  defaults: { lora?: PolicyTrainingOptions["lora"]; resolution?: { width: number; height: number } } = {},
): Pick<
  PolicyTrainingOptions,
  "initialLora" | "initialLoraAlpha" | "lora" | "initSeed" | "attentionHeadChunk"
> & {
  resolution?: { width: number; height: number };
} {
  const resolution = o.resolution ? { width: o.resolution[0], height: o.resolution[1] } : defaults.resolution;
  const lora = o.loraConfig ?? defaults.lora;
  return {
    ...(o.lora ? { initialLora: o.lora } : {}),
    ...(o.loraAlpha !== undefined ? { initialLoraAlpha: o.loraAlpha } : {}),
    ...(lora ? { lora } : {}),
    ...(o.initSeed !== undefined ? { initSeed: o.initSeed } : {}),
    ...(resolution ? { resolution } : {}),
    ...(o.attentionHeadChunk !== undefined ? { attentionHeadChunk: o.attentionHeadChunk } : {}),
  };
}

/**
 * A loaded LoRA as an editor applies it: builder options whose factors are graph inputs named
 * `lora.<PEFT key>` with alpha scaled by `loraScale`, and the feeds for those inputs.
 */
export function editorLora(
  lora: LoraFile | undefined,
  loraScale = 1,
): { options: LoraOptions | undefined; feeds: Record<string, Float32Array> } {
  if (!lora) return { options: undefined, feeds: {} };
  const feeds: Record<string, Float32Array> = {};
  for (const [k, t] of lora.factors) feeds[`lora.${k}`] = t.data;
  return {
    options: { rank: lora.rank, alpha: lora.alpha * loraScale, targets: lora.modules, inputPrefix: "lora." },
    feeds,
  };
}
