import { adapter as fluxKontext } from "@edit-r1/adapter-flux-kontext";
import { adapter as qwenImageEdit } from "@edit-r1/adapter-qwen-image-edit";
import type { Adapter, AdapterLoadOptions, Editor } from "@edit-r1/core";
import { INTERFACE_VERSION } from "@edit-r1/core";
import { EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import { writeUniWorldReplica } from "./replica.js";
import {
  checkBase,
  RELEASED_LORA_FILES,
  RELEASED_LORAS,
  resolveUniWorldLora,
  UNIWORLD_BASES,
  type UniWorldBase,
} from "./uniworld-lora.js";

/** Settings of the UniWorld adapter: the base adapters it layers over (tests give tiny-replica settings). */
export interface UniWorldAdapterSettings {
  bases?: Partial<Record<UniWorldBase, Adapter>>;
}

/**
 * How `loraScale` is read: as the weight diffusers' `set_adapters(..., [s])` gives a LoRA loaded with
 * `load_lora_weights`. The released files carry no LoRA metadata in their safetensors header, so diffusers
 * loads them at alpha = rank: the update is s·B·A whatever adapter_config.json says. The authors' evaluation
 * scripts sample with weight 1, while training ran at PEFT's alpha/rank = 2.
 */
export const LORA_SCALE_CONVENTION =
  "diffusers set_adapters weight: update = loraScale·B·A (alpha read as rank)";

/**
 * UniWorld-V2 = Edit-R1 applied to Qwen-Image-Edit-2509 (default) or FLUX.1-Kontext-dev, released as LoRAs:
 * the base adapter with the released LoRA (or `--lora`, e.g. a LoRA `edit-r1 train` wrote), sampled with the
 * authors' evaluation protocol (the bases' benchmark presets: Qwen 28 steps, true CFG 4, negative " ";
 * Kontext 28 steps, guidance 3.5) and `loraScale` 1 in diffusers' convention.
 */
export function createUniWorldAdapter(settings: UniWorldAdapterSettings = {}): Adapter {
  const bases: Record<UniWorldBase, Adapter> = {
    "qwen-image-edit": settings.bases?.["qwen-image-edit"] ?? qwenImageEdit,
    "flux-kontext": settings.bases?.["flux-kontext"] ?? fluxKontext,
  };
  /** The base's load options: everything but `base`, with the LoRA resolved. */
  const baseOptions = (o: AdapterLoadOptions) => {
    const { base: _base, ...rest } = o;
    return rest;
  };
  return {
    name: "uniworld",
    interfaceVersion: INTERFACE_VERSION,
    capabilities: {
      // Both bases take a guidance scale (Qwen's true CFG, Kontext's distilled guidance).
      guidance: "cfg",
      resolutions: "any",
      maxSourceImages: 3,
      loraTargets: EDIT_R1_LORA_TARGETS,
      dtypes: ["float32", "float16", "bfloat16"],
      devices: ["cpu", "cuda", "webgpu"],
      trainable: true,
      // Both bases checkpoint per block and chunk attention by heads; the options pass through to the base's policy.
      recompute: true,
      attentionHeadChunk: true,
      bases: UNIWORLD_BASES,
      builtInLora: true,
    },
    cli: {
      description:
        "UniWorld-V2 (Edit-R1): the released Edit-R1 LoRA on Qwen-Image-Edit-2509 (--base flux-kontext: FLUX.1-Kontext-dev)",
      defaultRepo: bases["qwen-image-edit"].cli.defaultRepo,
      downloadPatterns: bases["qwen-image-edit"].cli.downloadPatterns,
      downloads: ({ base }) => {
        const b = checkBase(base);
        const cli = bases[b].cli;
        return [
          ...(cli.defaultRepo
            ? [{ repo: cli.defaultRepo, ...(cli.downloadPatterns ? { patterns: cli.downloadPatterns } : {}) }]
            : []),
          { repo: RELEASED_LORAS[b], patterns: RELEASED_LORA_FILES },
        ];
      },
      writeReplica: (dir, o) =>
        writeUniWorldReplica(dir, { base: checkBase(o.base), seed: o.seed ?? 0, bases }),
      // Training continues from the released LoRA: rank 32, alpha 64 on the Edit-R1 targets, the bases' default
      // LoRA, so the full-size plan is the base's (the LoRA file is not read).
      loadShapePolicy: async (options = {}) => {
        const b = checkBase(options.base);
        const plan = bases[b].cli.loadShapePolicy;
        if (!plan) throw new Error(`base "${b}" ships no tensor shapes to plan with`);
        const { lora: _lora, ...rest } = baseOptions(options);
        return plan(rest);
      },
    },
    loadEditor: async (options = {}) => {
      const b = checkBase(options.base);
      const base = bases[b];
      const lora = await resolveUniWorldLora(b, options.model, options.lora, loraAlphaOf(options));
      const scale = options.loraScale ?? 1;
      // The base multiplies the file's alpha/rank by its loraScale; convert diffusers' weight to that.
      const inner = await base.loadEditor({
        ...baseOptions(options),
        lora: lora.path,
        loraAlpha: lora.alpha,
        loraScale: scale * lora.rankOverAlpha,
      });
      return uniworldEditor(inner, {
        base: b,
        lora: lora.source,
        loraScale: scale,
        loraScaleConvention: LORA_SCALE_CONVENTION,
      });
    },
    loadPolicy: async (options = {}) => {
      const b = checkBase(options.base);
      const base = bases[b];
      if (!base.loadPolicy) throw new Error(`base "${b}" cannot be trained`);
      // Training continues Edit-R1 from the released LoRA (or --lora); a loraConfig starts a fresh LoRA instead.
      if (options.loraConfig) return base.loadPolicy(baseOptions(options));
      const lora = await resolveUniWorldLora(b, options.model, options.lora, loraAlphaOf(options));
      return base.loadPolicy({ ...baseOptions(options), lora: lora.path, loraAlpha: lora.alpha });
    },
    trainDefaults: qwenImageEdit.trainDefaults,
  };
}

const loraAlphaOf = (o: AdapterLoadOptions) => (o.loraAlpha !== undefined ? { loraAlpha: o.loraAlpha } : {});

/** The base's editor under UniWorld's name, with UniWorld's LoRA source and scale in its protocol. */
function uniworldEditor(inner: Editor, extra: Record<string, unknown>): Editor {
  return {
    name: "uniworld",
    protocol: { ...inner.protocol, adapter: "uniworld", ...extra },
    edit: (requests) => inner.edit(requests),
    close: async () => {
      await inner.close?.();
    },
  };
}

export const adapter: Adapter = createUniWorldAdapter();
