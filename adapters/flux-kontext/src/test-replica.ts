import { readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { openSafetensors, writeSafetensors } from "@edit-r1/engine";
import { fluxDiffusersToBfl } from "@edit-r1/models";
import { repositoryRoot } from "@edit-r1/test-fixtures";
import { writeFluxKontextReplica } from "./replica.js";

/**
 * A tiny random-weight FLUX.1-Kontext pipeline in the diffusers folder layout, for tests: `edit-r1 replica`'s
 * pipeline (its configs, text encoders, tokenizers and scheduler; weights stored as float32) with the transformer
 * and VAE of the repository's tiny reference fixtures (fixtures/flux-kontext-transformer, fixtures/flux-vae: a
 * VAE of factor 2, so tests run on images a few pixels wide) in place of its own, the transformer in one file.
 */

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * The repository's own fixtures folder, not EDIT_R1_FIXTURES: the replica only borrows two small checkpoints of a
 * known shape from it (the adapter's tests are not parity checks against whatever folder is being audited).
 */
export function replicaFixturesRoot(): string {
  return join(repositoryRoot(), "fixtures");
}

async function readAll(path: string): Promise<Tensors> {
  const ckpt = await openSafetensors(path);
  const out: Tensors = new Map();
  for (const name of ckpt.names())
    out.set(name, { shape: [...ckpt.get(name).shape], data: await ckpt.readFloat32(name) });
  return out;
}

function fixture(name: string) {
  const dir = join(replicaFixturesRoot(), name);
  const meta = JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")) as {
    config: Record<string, unknown>;
  };
  return { config: meta.config, weights: join(dir, "weights.safetensors") };
}

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

async function writeTensors(path: string, t: Tensors): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeSafetensors(
    path,
    [...t].map(([k, v]) => [k, { dtype: "float32" as const, shape: v.shape, data: v.data }] as const),
  );
}

export interface TinyReplica {
  dir: string;
  /** The diffusers-keyed transformer weights, for building a BFL copy. */
  transformer: Tensors;
  transformerConfig: Record<string, unknown>;
}

/** Writes the tiny pipeline under `dir` (T5 sharded in two files with an index, as the real repo is). */
export async function writeTinyKontextReplica(dir: string): Promise<TinyReplica> {
  await writeFluxKontextReplica(dir, { dtype: "float32" });
  const tf = fixture("flux-kontext-transformer");
  const vae = fixture("flux-vae");
  const transformer = await readAll(tf.weights);
  const transformerConfig = { _class_name: "FluxTransformer2DModel", ...tf.config };
  // The fixtures read the replica's text encoders: T5's hidden states and CLIP's pooled output.
  const t5 = JSON.parse(readFileSync(join(dir, "text_encoder_2", "config.json"), "utf8"));
  const clip = JSON.parse(readFileSync(join(dir, "text_encoder", "config.json"), "utf8"));
  if (tf.config.joint_attention_dim !== t5.d_model || tf.config.pooled_projection_dim !== clip.hidden_size) {
    throw new Error("the flux-kontext-transformer fixture does not fit the replica's text encoders");
  }
  for (const sub of ["transformer", "vae"]) await rm(join(dir, sub), { recursive: true, force: true });
  await writeTensors(join(dir, "transformer", "diffusion_pytorch_model.safetensors"), transformer);
  await writeFile(join(dir, "transformer", "config.json"), json(transformerConfig));
  await writeTensors(join(dir, "vae", "diffusion_pytorch_model.safetensors"), await readAll(vae.weights));
  // FLUX's VAE shift and scale, so the test exercises (z − shift)·scale.
  await writeFile(
    join(dir, "vae", "config.json"),
    json({ _class_name: "AutoencoderKL", ...vae.config, shift_factor: 0.1159, scaling_factor: 0.3611 }),
  );
  return { dir, transformer, transformerConfig };
}

/** Writes the replica's transformer as a BFL single file `flux1-kontext-dev.safetensors` at `path`. */
export async function writeBflTransformer(path: string, replica: TinyReplica): Promise<void> {
  await writeTensors(path, fluxDiffusersToBfl(replica.transformer));
}
