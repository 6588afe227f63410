import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Adapter, Rng } from "@edit-r1/core";
import { writeSafetensors } from "@edit-r1/engine";
import { EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import { BUNDLED_LORA_FOLDER, RELEASED_LORAS, type UniWorldBase, UniWorldError } from "./uniworld-lora.js";

/**
 * The modules Edit-R1's LoRA targets in a transformer of this config, each [in, out]: every attention
 * projection of the double-stream blocks, and (FLUX) to_q/k/v of the single-stream blocks.
 */
export function releasedLoraModules(config: Record<string, unknown>): [string, number, number][] {
  const inner = Number(config.num_attention_heads) * Number(config.attention_head_dim);
  const modules: [string, number, number][] = [];
  for (let i = 0; i < Number(config.num_layers); i++)
    for (const t of EDIT_R1_LORA_TARGETS) modules.push([`transformer_blocks.${i}.${t}`, inner, inner]);
  for (let i = 0; i < Number(config.num_single_layers ?? 0); i++)
    for (const t of ["attn.to_q", "attn.to_k", "attn.to_v"])
      modules.push([`single_transformer_blocks.${i}.${t}`, inner, inner]);
  return modules;
}

/**
 * A random LoRA in the released files' form: what PEFT's `save_pretrained` writes for Edit-R1's LoRA
 * (`base_model.model.<module>.lora_A|lora_B.weight` in float32, adapter_config.json with r and lora_alpha = 2r
 * on EDIT_R1_LORA_TARGETS). B is non-zero, so the LoRA changes the edits.
 */
export async function writeReleasedFormLora(
  dir: string,
  modules: readonly [string, number, number][],
  options: { rank: number; seed: number; baseModel: string },
): Promise<void> {
  const { rank, seed } = options;
  const rng = Rng.derive(seed, "uniworld/replica-lora");
  const tensors: Record<string, { dtype: "float32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, inDim, outDim] of modules) {
    tensors[`base_model.model.${name}.lora_A.weight`] = {
      dtype: "float32",
      shape: [rank, inDim],
      data: rng.normals(rank * inDim).map((x) => x / rank),
    };
    tensors[`base_model.model.${name}.lora_B.weight`] = {
      dtype: "float32",
      shape: [outDim, rank],
      data: rng.normals(outDim * rank).map((x) => x * 0.5),
    };
  }
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, { metadata: { format: "pt" } });
  const config = {
    peft_type: "LORA",
    task_type: null,
    r: rank,
    lora_alpha: 2 * rank,
    target_modules: [...EDIT_R1_LORA_TARGETS].sort(),
    lora_dropout: 0,
    bias: "none",
    init_lora_weights: "gaussian",
    base_model_name_or_path: options.baseModel,
  };
  await writeFile(join(dir, "adapter_config.json"), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * `edit-r1 replica --adapter uniworld [--base b]`: the base adapter's tiny replica, with a LoRA in the released
 * form bundled at `<dir>/uniworld-lora`, which the UniWorld adapter finds before the Hub cache.
 */
export async function writeUniWorldReplica(
  dir: string,
  options: { base: UniWorldBase; seed: number; bases: Record<UniWorldBase, Adapter> },
): Promise<void> {
  const base = options.bases[options.base];
  if (!base.cli.writeReplica) {
    throw new UniWorldError(
      `the ${options.base} adapter cannot write a replica yet; use --base qwen-image-edit, or a real checkpoint`,
    );
  }
  await base.cli.writeReplica(dir, { seed: options.seed });
  const config = JSON.parse(await readFile(join(dir, "transformer", "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  await writeReleasedFormLora(join(dir, BUNDLED_LORA_FOLDER), releasedLoraModules(config), {
    rank: 4,
    seed: options.seed,
    baseModel: RELEASED_LORAS[options.base],
  });
}
