// Full-size Qwen-Image-Edit-2509 at Edit-R1's rollout size, from all-zero bf16 checkpoints made as sparse files
// (a safetensors header with the real key names and shapes, then ftruncate: no data is written or read):
//  1. the transformer (20.4 B params, 1933 tensors, keys in ../test-data/qwen_image_edit_transformer.txt): time to
//     open the weights, build the edit velocity graph at 512² (1024 target + 1024 source tokens, 256 text rows
//     with a mask), with and without Edit-R1's r=32 LoRA, and open the onnxruntime session; then the fused NFT
//     training graph (θ, old and reference passes over one set of initializers, the LoRA gradients);
//  2. the Qwen2.5-VL-7B text encoder (8.29 B params, keys in qwen2-5-vl-7b-text-encoder.keys.txt): one 384²
//     condition image (→ 392×392, 28×28 patches, 196 image tokens) in the Plus template, 320 ids.
// No forward pass is run; everything computes in float32 from the bf16 weights (cast inside the graph), as
// the adapter's default dtype does. Reports build time, session-open time and the process's peak RSS (VmHWM,
// the onnxruntime workers included) as JSON in .perf/. Targets: build + open < 60 s each, peak RSS < 6 GiB.
// An onnxruntime failure is recorded (with its message) as that part's result, and the script goes on.
//
// `node full-size.mjs --write-encoder-keys` regenerates the encoder's keys file: the names and shapes of the
// Qwen2.5-VL-7B-Instruct checkpoint (legacy `visual.` / `model.` layout), checked by building the encoder
// once at full size over them: every key but lm_head.weight must be asked for, with exactly that shape.
// Runs against dist/ (packages/engine, models, core).
import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../..");
const TRANSFORMER_KEYS = path.join(here, "..", "test-data", "qwen_image_edit_transformer.txt");
const ENCODER_KEYS = path.join(here, "qwen2-5-vl-7b-text-encoder.keys.txt");
const load = async (pkg) => {
  try {
    return await import(path.join(repoRoot, pkg, "dist/index.js"));
  } catch (e) {
    throw new Error(`cannot load ${pkg}/dist (build it first): ${e.message}`);
  }
};
const { Graph, Runtime, ops } = await load("packages/engine");
const {
  buildQwen25VLEncoder,
  buildQwenImageEditVelocity,
  EDIT_R1_LORA_TARGETS,
  openSafetensorsWeights,
  parseQwen25VLConfig,
  parseQwenImageTransformerConfig,
  qwen25VLRopeIndex,
} = await load("packages/models");

const GiB = 2 ** 30;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const peakRss = () =>
  Number(readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m)[1]) * 1024;
const gib = (bytes) => +(bytes / GiB).toFixed(2);
const numel = (shape) => shape.reduce((a, b) => a * b, 1);

// Qwen-Image-Edit-2509's text_encoder/config.json (Qwen2.5-VL-7B-Instruct), the keys the parser reads.
const ENCODER_CONFIG = {
  architectures: ["Qwen2_5_VLForConditionalGeneration"],
  hidden_size: 3584,
  intermediate_size: 18944,
  num_hidden_layers: 28,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  vocab_size: 152064,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  rope_scaling: { type: "mrope", mrope_section: [16, 24, 24] },
  hidden_act: "silu",
  tie_word_embeddings: false,
  image_token_id: 151655,
  video_token_id: 151656,
  vision_start_token_id: 151652,
  vision_end_token_id: 151653,
  vision_config: {
    depth: 32,
    hidden_size: 1280,
    intermediate_size: 3420,
    num_heads: 16,
    in_chans: 3,
    out_hidden_size: 3584,
    patch_size: 14,
    spatial_merge_size: 2,
    temporal_patch_size: 2,
    window_size: 112,
    fullatt_block_indexes: [7, 15, 23, 31],
    hidden_act: "silu",
  },
};

/** A keys file: `# <name> config=<json>`, `# tensors=… params=…`, then `key\t[shape]` lines. */
function readKeys(file) {
  const lines = readFileSync(file, "utf8").split("\n");
  const config = JSON.parse(lines[0].replace(/^# \S+ config=/, ""));
  const keys = [];
  for (const line of lines) {
    if (!line || line.startsWith("#")) continue;
    const [name, shape] = line.split("\t");
    keys.push([name, JSON.parse(shape)]);
  }
  return { config, keys };
}

/** An all-zero bf16 safetensors file of these keys: the header, then ftruncate to the full size (sparse). */
function sparseCheckpoint(file, keys) {
  const header = {};
  let offset = 0;
  for (const [name, dims] of keys) {
    const bytes = numel(dims) * 2;
    header[name] = { dtype: "BF16", shape: dims, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(file, "w");
  try {
    writeSync(fd, Buffer.concat([len, json]));
    ftruncateSync(fd, 8 + json.length + offset);
  } finally {
    closeSync(fd);
  }
  return { tensors: keys.length, params: offset / 2, bytes: offset };
}

/** Wraps a WeightSource to record which of its keys a builder asked for. */
function recording(source) {
  const asked = new Set();
  return {
    asked,
    source: {
      description: source.description,
      names: () => source.names(),
      get(name) {
        const e = source.get(name);
        if (e) asked.add(name);
        return e;
      },
    },
  };
}

/** The Qwen2.5-VL-7B-Instruct checkpoint's keys (legacy layout) and shapes, from its config.json. */
function encoderKeys(c) {
  const v = c.vision_config;
  const d = c.hidden_size;
  const kv = (d / c.num_attention_heads) * c.num_key_value_heads;
  const vd = v.hidden_size;
  const merged = vd * v.spatial_merge_size ** 2;
  const keys = [
    ["visual.patch_embed.proj.weight", [vd, v.in_chans, v.temporal_patch_size, v.patch_size, v.patch_size]],
  ];
  const lin = (name, out, inp, bias = true) => {
    keys.push([`${name}.weight`, [out, inp]]);
    if (bias) keys.push([`${name}.bias`, [out]]);
  };
  for (let i = 0; i < v.depth; i++) {
    const b = `visual.blocks.${i}`;
    keys.push([`${b}.norm1.weight`, [vd]], [`${b}.norm2.weight`, [vd]]);
    lin(`${b}.attn.qkv`, 3 * vd, vd);
    lin(`${b}.attn.proj`, vd, vd);
    lin(`${b}.mlp.gate_proj`, v.intermediate_size, vd);
    lin(`${b}.mlp.up_proj`, v.intermediate_size, vd);
    lin(`${b}.mlp.down_proj`, vd, v.intermediate_size);
  }
  keys.push(["visual.merger.ln_q.weight", [vd]]);
  lin("visual.merger.mlp.0", merged, merged);
  lin("visual.merger.mlp.2", v.out_hidden_size, merged);
  keys.push(["model.embed_tokens.weight", [c.vocab_size, d]]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `model.layers.${i}`;
    lin(`${l}.self_attn.q_proj`, d, d);
    lin(`${l}.self_attn.k_proj`, kv, d);
    lin(`${l}.self_attn.v_proj`, kv, d);
    lin(`${l}.self_attn.o_proj`, d, d, false);
    lin(`${l}.mlp.gate_proj`, c.intermediate_size, d, false);
    lin(`${l}.mlp.up_proj`, c.intermediate_size, d, false);
    lin(`${l}.mlp.down_proj`, d, c.intermediate_size, false);
    keys.push([`${l}.input_layernorm.weight`, [d]], [`${l}.post_attention_layernorm.weight`, [d]]);
  }
  keys.push(["model.norm.weight", [d]], ["lm_head.weight", [c.vocab_size, d]]);
  return keys;
}

// One 384² condition image as the Qwen2-VL processor sizes it: smart_resize(384, 384) = 392×392 (multiples of
// 28), a 1×28×28 patch grid (784 rows of 3·2·14² = 1176 values), 784 / 2² = 196 image tokens.
const IMAGE_GRID = [1, 28, 28];
const IMAGE_TOKENS = (IMAGE_GRID[0] * IMAGE_GRID[1] * IMAGE_GRID[2]) / 4;
const ENCODER_IDS = 320;

/**
 * The ids of the Plus template with one image, right-padded to 320 like the adapter pads the VLM's ids:
 * 64 system-block tokens (`<|im_start|>system\n…<|im_end|>\n<|im_start|>user\n`), "Picture 1: ",
 * `<|vision_start|>`, 196 `<|image_pad|>`, `<|vision_end|>`, a 12-token instruction, and
 * `<|im_end|>\n<|im_start|>assistant\n`: 284 tokens. Text ids are placeholders; only the special tokens'
 * places matter to the graph (M-RoPE positions are baked in from them).
 */
function plusTemplateIds(c) {
  const [imStart, imEnd, nl, pad] = [151644, 151645, 198, 151643];
  const text = (n) => Array.from({ length: n }, (_, i) => 1000 + i);
  const ids = [
    ...[imStart, 8948, nl, ...text(58), imEnd, nl, imStart, 872, nl].slice(0, 64),
    ...[24669, 220, 16, 25, 220],
    c.vision_start_token_id,
    ...new Array(IMAGE_TOKENS).fill(c.image_token_id),
    c.vision_end_token_id,
    ...text(12),
    ...[imEnd, nl, imStart, 77091, nl],
  ];
  const tokens = ids.length;
  while (ids.length < ENCODER_IDS) ids.push(pad);
  return { ids, tokens };
}

/** Builds the text encoder's graph for the Plus prompt with one 384² image; output: the last hidden state. */
function buildEncoderGraph(config, weights) {
  const g = new Graph("qwen25vl_encoder");
  const v = config.vision;
  const { ids } = plusTemplateIds(ENCODER_CONFIG);
  const { positionIds } = qwen25VLRopeIndex(ids, [IMAGE_GRID], config);
  const patchRows = numel(IMAGE_GRID);
  const { lastHiddenState } = buildQwen25VLEncoder(g, config, weights, {
    inputIds: g.input("input_ids", "int64", [1, ENCODER_IDS]),
    pixelValues: g.input("pixel_values", "float32", [
      patchRows,
      v.inChannels * v.temporalPatchSize * v.patchSize ** 2,
    ]),
    imageGrids: [IMAGE_GRID],
    positionIds,
  });
  return { graph: g, outputs: { hidden: lastHiddenState } };
}

if (process.argv.includes("--write-encoder-keys")) {
  const keys = encoderKeys(ENCODER_CONFIG);
  const config = parseQwen25VLConfig(ENCODER_CONFIG);
  const stub = new Map(
    keys.map(([name, shape]) => [
      name,
      { dtype: "bfloat16", shape, data: { path: "/nonexistent", offset: 0, length: numel(shape) * 2 } },
    ]),
  );
  const { asked, source } = recording({
    description: "derived Qwen2.5-VL-7B keys",
    get: (n) => stub.get(n),
    names: () => [...stub.keys()],
  });
  buildEncoderGraph(config, source); // GraphWeights throws on any key asked for with another shape
  const unused = keys.map(([n]) => n).filter((n) => !asked.has(n));
  if (unused.length !== 1 || unused[0] !== "lm_head.weight")
    throw new Error(`the encoder did not ask for: ${unused.join(", ")}`);
  const params = keys.reduce((n, [, s]) => n + numel(s), 0);
  const text = [
    `# qwen2_5_vl_7b_text_encoder config=${JSON.stringify(ENCODER_CONFIG)}`,
    `# tensors=${keys.length} params=${params}`,
    ...keys.map(([n, s]) => `${n}\t${JSON.stringify(s).replaceAll(",", ", ")}`),
  ].join("\n");
  writeFileSync(ENCODER_KEYS, `${text}\n`);
  console.log(`wrote ${ENCODER_KEYS}: ${keys.length} tensors, ${params} params (${asked.size} used)`);
  process.exit(0);
}

const runtime = new Runtime();
const dir = mkdtempSync(path.join(tmpdir(), "qwen-image-edit-perf-"));
const result = {
  machine: "2-core dev box (CPU, onnxruntime-node)",
  computeDtype: "float32 (bf16 weights cast in the graph)",
};
const TARGET_MS = 60_000;
const TARGET_RSS_GIB = 6;

/** Builds a graph, opens its session and disposes it; a failure to open is recorded, not thrown. */
async function measure(name, build, extra = {}) {
  let t = now();
  let built;
  try {
    built = build();
  } catch (e) {
    result[name] = { error: `building the graph failed: ${e?.name ?? "Error"}: ${e?.message ?? String(e)}` };
    console.log(name, result[name]);
    return result[name];
  }
  const { graph, outputs, ...info } = built;
  const buildMs = now() - t;
  const entry = { buildGraphMs: Math.round(buildMs), nodes: graph.nodes.length, ...info, ...extra };
  t = now();
  try {
    const session = await runtime.compile(graph, { outputs });
    entry.openSessionMs = Math.round(now() - t);
    entry.totalMs = Math.round(buildMs + (now() - t));
    await session.dispose();
    entry.meetsTimeTarget = entry.buildGraphMs + entry.openSessionMs < TARGET_MS;
  } catch (e) {
    entry.openSessionMs = Math.round(now() - t);
    entry.error = `${e?.name ?? "Error"}: ${e?.message ?? String(e)}`;
    entry.meetsTimeTarget = false;
  }
  entry.peakRssGiBSoFar = gib(peakRss());
  result[name] = entry;
  console.log(name, entry);
  return entry;
}

try {
  // Load onnxruntime in the worker first, so the sessions' own cost is what is timed.
  {
    const g = new Graph("warm");
    const x = g.input("x", "float32", [1]);
    await (await runtime.compile(g, { outputs: { y: ops.mul(x, 2) } })).dispose();
  }
  result.rssAtStartGiB = gib(peakRss());

  // 1. The transformer.
  const tk = readKeys(TRANSFORMER_KEYS);
  const tfile = path.join(dir, "diffusion_pytorch_model.safetensors");
  result.transformer = sparseCheckpoint(tfile, tk.keys);
  let t = now();
  const opened = recording(await openSafetensorsWeights(tfile));
  const config = parseQwenImageTransformerConfig(tk.config);
  result.transformer.openWeightsMs = Math.round(now() - t);
  const transformer = { config, weights: opened.source };
  const C = config.inChannels;
  const D = config.jointAttentionDim;
  // Edit-R1's rollout: a 512² target and one 512² source (VAE /8, 2×2 packing → 32×32 tokens each), the VLM's
  // hidden states padded with a mask to 256 rows.
  const imgShapes = [
    [1, 32, 32],
    [1, 32, 32],
  ];
  const T = 1024;
  const S = 1024;
  const L = 256;
  result.tokens = { target: T, source: S, text: L };
  const lora = { rank: 32, alpha: 64, targets: EDIT_R1_LORA_TARGETS };

  for (const variant of ["base", "lora-r32"]) {
    await measure(`transformer-${variant}`, () => {
      const g = new Graph(`qwen_image_edit_${variant}`);
      const out = buildQwenImageEditVelocity(
        g,
        transformer,
        {
          latents: g.input("latents", "float32", [1, T, C]),
          sources: g.input("sources", "float32", [1, S, C]),
          text: g.input("text", "float32", [1, L, D]),
          textMask: g.input("text_mask", "float32", [1, L]),
          timestep: g.input("timestep", "float32", [1]),
        },
        { imgShapes, ...(variant === "base" ? {} : { lora }) },
      );
      return { graph: g, outputs: { velocity: out.velocity }, loraFactors: out.lora.length };
    });
  }
  result.transformer.unusedKeys = tk.keys.map(([n]) => n).filter((n) => !opened.asked.has(n));

  // The fused DiffusionNFT step of the trainable policy (QwenImageEditPolicy's graph): v_θ (r=32 LoRA inputs),
  // v_old (a second set), v_ref (no LoRA) over one set of frozen initializers, the NFT loss and d loss/d θ.
  {
    let core;
    let loraFactors = 0;
    try {
      const { GraphNftPolicyCore } = await load("packages/core");
      const probe = new Graph("probe");
      const inp = (n, s) => probe.input(n, "float32", s);
      const probed = buildQwenImageEditVelocity(
        probe,
        transformer,
        {
          latents: inp("x", [1, 1, C]),
          sources: inp("s", [1, 1, C]),
          text: inp("txt", [1, 1, D]),
          textMask: inp("m", [1, 1]),
          timestep: inp("t", [1]),
        },
        {
          imgShapes: [
            [1, 1, 1],
            [1, 1, 1],
          ],
          lora,
        },
      );
      loraFactors = probed.lora.length;
      core = new GraphNftPolicyCore(
        {
          latentShape: [T, C],
          conditions: {
            sources: { dtype: "float32", shape: [S, C] },
            text: { dtype: "float32", shape: [L, D] },
            text_mask: { dtype: "float32", shape: [L] },
          },
          parameters: Object.fromEntries(probed.lora.map((p) => [p.key, p.input.shape])),
          buildVelocity: (g, xt, tt, cond, params) =>
            buildQwenImageEditVelocity(
              g,
              transformer,
              { latents: xt, sources: cond.sources, text: cond.text, textMask: cond.text_mask, timestep: tt },
              { imgShapes, lora: params ? { ...lora, tensors: params } : undefined },
            ).velocity,
        },
        { runtime },
      );
    } catch (e) {
      result["nft-step-r32"] = { error: `could not set up the NFT core: ${e?.message ?? e}` };
    }
    if (core) await measure("nft-step-r32", () => core.trainingGraph(1), { loraFactors, textTokens: L });
  }
  rmSync(tfile, { force: true });

  // 2. The text encoder.
  const ek = readKeys(ENCODER_KEYS);
  const efile = path.join(dir, "text_encoder.safetensors");
  result.textEncoder = sparseCheckpoint(efile, ek.keys);
  t = now();
  const encoderWeights = recording(await openSafetensorsWeights(efile));
  const encoderConfig = parseQwen25VLConfig(ek.config, ENCODER_KEYS);
  result.textEncoder.openWeightsMs = Math.round(now() - t);
  const { tokens } = plusTemplateIds(ek.config);
  await measure("text-encoder", () => buildEncoderGraph(encoderConfig, encoderWeights.source), {
    ids: ENCODER_IDS,
    templateTokens: tokens,
    imageTokens: IMAGE_TOKENS,
    imageGrid: IMAGE_GRID,
  });
  result.textEncoder.unusedKeys = ek.keys.map(([n]) => n).filter((n) => !encoderWeights.asked.has(n));

  result.peakRssBytes = peakRss();
  result.peakRssGiB = gib(result.peakRssBytes);
  result.targets = { buildPlusOpenMs: TARGET_MS, peakRssGiB: TARGET_RSS_GIB };
  const parts = ["transformer-base", "transformer-lora-r32", "nft-step-r32", "text-encoder"];
  result.failed = parts.filter((p) => result[p]?.error);
  result.meetsTargets = parts.every((p) => result[p]?.meetsTimeTarget) && result.peakRssGiB < TARGET_RSS_GIB;
} finally {
  await runtime.close?.();
  rmSync(dir, { recursive: true, force: true });
}
const out = path.join(repoRoot, ".perf");
mkdirSync(out, { recursive: true });
writeFileSync(
  path.join(out, "adapter-qwen-image-edit-full-size.json"),
  `${JSON.stringify({ name: "full-size", date: new Date().toISOString(), ...result }, null, 2)}\n`,
);
console.log(JSON.stringify(result, null, 2));
