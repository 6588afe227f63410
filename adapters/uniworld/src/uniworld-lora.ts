import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readLora } from "@edit-r1/adapter-kit";
import { EditR1Error } from "@edit-r1/core";
import { HubError, type ResolveOptions, resolveSnapshotDir } from "@edit-r1/hub";

/** A UniWorld option, LoRA or folder that cannot be used; the message says what to do. */
export class UniWorldError extends EditR1Error {
  override readonly name = "UniWorldError";
}

/** The bases UniWorld-V2 was released on, the default first. */
export const UNIWORLD_BASES = ["qwen-image-edit", "flux-kontext"] as const;
export type UniWorldBase = (typeof UNIWORLD_BASES)[number];

/** The released Edit-R1 LoRAs (Hugging Face collection chestnutlzj/edit-r1), one per base. */
export const RELEASED_LORAS: Readonly<Record<UniWorldBase, string>> = {
  "qwen-image-edit": "chestnutlzj/Edit-R1-Qwen-Image-Edit-2509",
  "flux-kontext": "chestnutlzj/Edit-R1-FLUX.1-Kontext-dev",
};

/** The files of a released LoRA repository. */
export const RELEASED_LORA_FILES = ["adapter_model.safetensors", "adapter_config.json"] as const;

/**
 * A LoRA bundled inside a base model folder (what `edit-r1 replica --adapter uniworld` writes), found before the
 * Hub cache so a local bundle needs no network and no cache.
 */
export const BUNDLED_LORA_FOLDER = "uniworld-lora";

export function checkBase(base: string | undefined): UniWorldBase {
  const b = base ?? UNIWORLD_BASES[0];
  if (!(UNIWORLD_BASES as readonly string[]).includes(b))
    throw new UniWorldError(
      `--base ${b}: UniWorld was released on ${UNIWORLD_BASES.join(" and ")}; choose one`,
    );
  return b as UniWorldBase;
}

/** Where the LoRA comes from: the user's, a bundle in the model folder, or the released repository in the cache. */
export interface UniWorldLora {
  /** A .safetensors file or an adapter folder. */
  path: string;
  /** What the protocol records: the path given, or the released repository id. */
  source: string;
  /** rank / alpha of the file (readLora's alpha: adapter_config.json, `.alpha` tensors, `loraAlpha`, else rank). */
  rankOverAlpha: number;
  /** The alpha it was read with; the base adapter is given it so it reads the same file the same way. */
  alpha: number;
}

/**
 * Resolves the LoRA UniWorld applies, offline: `lora` when given; else `<model>/uniworld-lora` when `model` is a
 * local folder holding one; else the released repository for `base` in the Hugging Face cache. A LoRA whose
 * files give no alpha is read at `loraAlpha`, else at alpha = rank: UniWorld applies LoRAs in diffusers'
 * convention (update = loraScale·B·A), where alpha is read as rank, so a PEFT folder without its config is
 * applied as diffusers would apply it.
 */
export async function resolveUniWorldLora(
  base: UniWorldBase,
  model: string | undefined,
  lora: string | undefined,
  options: ResolveOptions & { loraAlpha?: number } = {},
): Promise<UniWorldLora> {
  let path: string;
  let source: string;
  if (lora !== undefined) {
    path = lora;
    source = lora;
  } else {
    const bundled = model === undefined ? undefined : join(model, BUNDLED_LORA_FOLDER);
    if (bundled && (await stat(bundled).catch(() => undefined))?.isDirectory()) {
      path = bundled;
      source = bundled;
    } else {
      const repo = RELEASED_LORAS[base];
      try {
        path = await resolveSnapshotDir(repo, options);
      } catch (e) {
        if (!(e instanceof HubError)) throw e;
        throw new UniWorldError(
          `the released UniWorld LoRA ${repo} is not in the Hugging Face cache (${e.message}); run ` +
            `\`edit-r1 download --adapter uniworld${base === UNIWORLD_BASES[0] ? "" : ` --base ${base}`}\`, ` +
            "or pass --lora with a local copy",
        );
      }
      source = repo;
    }
  }
  const file = await readLora(path, { alpha: options.loraAlpha ?? "rank" });
  return { path, source, rankOverAlpha: file.rank / file.alpha, alpha: file.alpha };
}
