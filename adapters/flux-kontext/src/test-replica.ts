import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { openSafetensors, writeSafetensors } from "@edit-r1/engine";
import { fluxDiffusersToBfl } from "@edit-r1/models";
import { noise, repositoryRoot } from "@edit-r1/test-fixtures";

/**
 * A tiny random-weight FLUX.1-Kontext pipeline in the diffusers folder layout, for tests: the transformer and
 * VAE of the repository's tiny reference fixtures (fixtures/flux-kontext-transformer, fixtures/flux-vae), a
 * tiny CLIP text model and T5 encoder with random weights, tokenizer files made for the test (a CLIP BPE from
 * vocab.json + merges.txt, a T5 Unigram tokenizer.json), model_index.json, configs and a scheduler config.
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

function randomTensors(shapes: ReadonlyArray<readonly [string, number[]]>, seed: number): Tensors {
  return new Map(
    shapes.map(([k, shape], i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = noise(n, seed + i, 0.5);
      // Norm weights near 1, as trained models have them.
      if (/norm[^.]*\.weight$/.test(k)) for (let j = 0; j < n; j++) data[j] = 1 + data[j]! * 0.2;
      return [k, { shape, data }];
    }),
  );
}

const LETTERS = "abcdefghijklmnopqrstuvwxyz";

function clipVocab(): Record<string, number> {
  const tokens: string[] = [];
  for (const c of `${LETTERS}.,!'0123456789`) tokens.push(c, `${c}</w>`);
  tokens.push("th", "the</w>", "re", "red</w>", "ca", "cat</w>", "<|startoftext|>", "<|endoftext|>");
  return Object.fromEntries(tokens.map((t, i) => [t, i]));
}

const T5_PIECES: [string, number][] = [
  ["<pad>", 0],
  ["</s>", 0],
  ["<unk>", 0],
  ["▁", -2],
  ["▁make", -4],
  ["▁the", -3],
  ["▁cat", -4],
  ["▁red", -4],
  ["▁blue", -4],
  ...[...LETTERS].map((c): [string, number] => [c, -8]),
];

export const CLIP_CONFIG = {
  architectures: ["CLIPTextModel"],
  vocab_size: Object.keys(clipVocab()).length,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  bos_token_id: 0,
  eos_token_id: 2,
  pad_token_id: 1,
};

export const T5_CONFIG = {
  architectures: ["T5EncoderModel"],
  vocab_size: T5_PIECES.length,
  d_model: 32,
  d_kv: 8,
  d_ff: 48,
  num_layers: 2,
  num_heads: 2,
  relative_attention_num_buckets: 8,
  relative_attention_max_distance: 16,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: "gated-gelu",
  is_gated_act: true,
  dense_act_fn: "gelu_new",
};

function clipWeights(): Tensors {
  const c = CLIP_CONFIG;
  const D = c.hidden_size;
  const F = c.intermediate_size;
  const p = "text_model.";
  const shapes: [string, number[]][] = [
    [`${p}embeddings.token_embedding.weight`, [c.vocab_size, D]],
    [`${p}embeddings.position_embedding.weight`, [c.max_position_embeddings, D]],
    [`${p}final_layer_norm.weight`, [D]],
    [`${p}final_layer_norm.bias`, [D]],
  ];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const n = `${p}encoder.layers.${l}.`;
    for (const m of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      shapes.push([`${n}self_attn.${m}.weight`, [D, D]], [`${n}self_attn.${m}.bias`, [D]]);
    }
    for (const m of ["layer_norm1", "layer_norm2"])
      shapes.push([`${n}${m}.weight`, [D]], [`${n}${m}.bias`, [D]]);
    shapes.push([`${n}mlp.fc1.weight`, [F, D]], [`${n}mlp.fc1.bias`, [F]]);
    shapes.push([`${n}mlp.fc2.weight`, [D, F]], [`${n}mlp.fc2.bias`, [D]]);
  }
  return randomTensors(shapes, 100);
}

function t5Weights(): Tensors {
  const c = T5_CONFIG;
  const D = c.d_model;
  const inner = c.num_heads * c.d_kv;
  const shapes: [string, number[]][] = [
    ["shared.weight", [c.vocab_size, D]],
    [
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      [c.relative_attention_num_buckets, c.num_heads],
    ],
    ["encoder.final_layer_norm.weight", [D]],
  ];
  for (let l = 0; l < c.num_layers; l++) {
    const n = `encoder.block.${l}.layer.`;
    for (const m of ["q", "k", "v"]) shapes.push([`${n}0.SelfAttention.${m}.weight`, [inner, D]]);
    shapes.push([`${n}0.SelfAttention.o.weight`, [D, inner]], [`${n}0.layer_norm.weight`, [D]]);
    shapes.push(
      [`${n}1.DenseReluDense.wi_0.weight`, [c.d_ff, D]],
      [`${n}1.DenseReluDense.wi_1.weight`, [c.d_ff, D]],
    );
    shapes.push([`${n}1.DenseReluDense.wo.weight`, [D, c.d_ff]], [`${n}1.layer_norm.weight`, [D]]);
  }
  return randomTensors(shapes, 200);
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
  const tf = fixture("flux-kontext-transformer");
  const vae = fixture("flux-vae");
  const transformer = await readAll(tf.weights);
  const transformerConfig = { _class_name: "FluxTransformer2DModel", ...tf.config };
  await writeFile(
    join(await mkdirp(dir), "model_index.json"),
    json({
      _class_name: "FluxKontextPipeline",
      _diffusers_version: "0.34.0",
      scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
      text_encoder: ["transformers", "CLIPTextModel"],
      text_encoder_2: ["transformers", "T5EncoderModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
      tokenizer_2: ["transformers", "T5TokenizerFast"],
      transformer: ["diffusers", "FluxTransformer2DModel"],
      vae: ["diffusers", "AutoencoderKL"],
    }),
  );
  await writeTensors(join(dir, "transformer", "diffusion_pytorch_model.safetensors"), transformer);
  await writeFile(join(dir, "transformer", "config.json"), json(transformerConfig));
  await writeTensors(join(dir, "vae", "diffusion_pytorch_model.safetensors"), await readAll(vae.weights));
  // FLUX's VAE shift and scale, so the test exercises (z − shift)·scale.
  await writeFile(
    join(dir, "vae", "config.json"),
    json({ ...vae.config, shift_factor: 0.1159, scaling_factor: 0.3611 }),
  );
  await writeTensors(join(dir, "text_encoder", "model.safetensors"), clipWeights());
  await writeFile(join(dir, "text_encoder", "config.json"), json(CLIP_CONFIG));
  const t5 = [...t5Weights()];
  const half = Math.ceil(t5.length / 2);
  const shards = [t5.slice(0, half), t5.slice(half)];
  const weightMap: Record<string, string> = {};
  for (const [i, part] of shards.entries()) {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    await writeTensors(join(dir, "text_encoder_2", name), new Map(part));
    for (const [k] of part) weightMap[k] = name;
  }
  await writeFile(
    join(dir, "text_encoder_2", "model.safetensors.index.json"),
    json({ metadata: {}, weight_map: weightMap }),
  );
  await writeFile(join(dir, "text_encoder_2", "config.json"), json(T5_CONFIG));
  await writeTokenizers(dir);
  await mkdir(join(dir, "scheduler"), { recursive: true });
  await writeFile(
    join(dir, "scheduler", "scheduler_config.json"),
    json({
      _class_name: "FlowMatchEulerDiscreteScheduler",
      base_image_seq_len: 256,
      base_shift: 0.5,
      max_image_seq_len: 4096,
      max_shift: 1.15,
      num_train_timesteps: 1000,
      shift: 3.0,
      use_dynamic_shifting: true,
      time_shift_type: "exponential",
    }),
  );
  return { dir, transformer, transformerConfig };
}

async function mkdirp(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}

async function writeTokenizers(dir: string): Promise<void> {
  const clip = await mkdirp(join(dir, "tokenizer"));
  const eot = "<|endoftext|>";
  await writeFile(join(clip, "vocab.json"), JSON.stringify(clipVocab()));
  await writeFile(join(clip, "merges.txt"), "#version: 0.2\nt h\nth e</w>\nr e\nre d</w>\nc a\nca t</w>\n");
  const special = { bos_token: "<|startoftext|>", eos_token: eot, unk_token: eot, pad_token: eot };
  await writeFile(
    join(clip, "tokenizer_config.json"),
    json({ tokenizer_class: "CLIPTokenizer", model_max_length: 77, ...special }),
  );
  await writeFile(join(clip, "special_tokens_map.json"), json(special));
  const t5 = await mkdirp(join(dir, "tokenizer_2"));
  const added = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  await writeFile(
    join(t5, "tokenizer.json"),
    JSON.stringify({
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [added(0, "<pad>"), added(1, "</s>"), added(2, "<unk>")],
      normalizer: {
        type: "Sequence",
        normalizers: [{ type: "Replace", pattern: { Regex: " {2,}" }, content: " " }],
      },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "WhitespaceSplit" },
          { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
        ],
      },
      post_processor: {
        type: "TemplateProcessing",
        single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
        pair: [
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: "</s>", type_id: 0 } },
          { Sequence: { id: "B", type_id: 0 } },
          { SpecialToken: { id: "</s>", type_id: 0 } },
        ],
        special_tokens: { "</s>": { id: "</s>", ids: [1], tokens: ["</s>"] } },
      },
      decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
      model: { type: "Unigram", unk_id: 2, vocab: T5_PIECES, byte_fallback: false },
    }),
  );
  await writeFile(
    join(t5, "tokenizer_config.json"),
    json({ tokenizer_class: "T5Tokenizer", eos_token: "</s>", pad_token: "<pad>", unk_token: "<unk>" }),
  );
}

/** Writes the replica's transformer as a BFL single file `flux1-kontext-dev.safetensors` at `path`. */
export async function writeBflTransformer(path: string, replica: TinyReplica): Promise<void> {
  await writeTensors(path, fluxDiffusersToBfl(replica.transformer));
}
