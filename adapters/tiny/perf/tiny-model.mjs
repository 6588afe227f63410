// The tiny model on onnxruntime at perf-anchors' configuration (2 double + 2 single blocks, 4 heads × 32,
// joint width 128; 256 target + 256 context tokens, 20 word tokens): forward, forward + backward of mean(v²)
// over every weight, and the fused NFT LoRA step shape (v_θ, v_old, v_ref + LoRA gradients). Batch 4 is the
// PyTorch anchor's batch (diffusers FluxTransformer2DModel, torch 1.13, 2 threads: forward 413–496 ms,
// forward + backward 864–1087 ms, with 16 text tokens); its figures are quoted as ratios. A plain onnxruntime
// MatMul measured in the same run is the machine baseline. Runs against dist (build first).
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { closeDefaultRuntime, compile, Graph, grad, ops } from "@edit-r1/engine";
import { memoryWeightSource, parseFluxTransformerConfig } from "@edit-r1/models";
import { VOCABULARY } from "@edit-r1/shapes";
import {
  buildTinyVelocity,
  InputWeights,
  initTinyWeights,
  TINY_TEXT_TOKENS,
  TINY_TOKEN_CHANNELS,
  TINY_TRANSFORMER_CONFIG_JSON,
} from "../dist/index.js";

const REPS = Number(process.env.PERF_REPS ?? 7);
// The anchor's shape (a 32×32 image in 2×2 patches), not the adapter's 16×16: the PyTorch figures are for it.
const TINY_IMAGE_TOKENS = 256;
const V = VOCABULARY.length;
const PYTORCH = { forward: [413, 496], train: [864, 1087] };
const config = parseFluxTransformerConfig(TINY_TRANSFORMER_CONFIG_JSON);
const weights = initTinyWeights(config, { seed: 1, vocabSize: V, textTokens: TINY_TEXT_TOKENS });
// adaLN-Zero leaves exact zeros that would let the runtime skip work; perturb them.
for (const w of weights.values())
  for (let i = 0; i < w.length; i++) if (w[i] === 0) w[i] = ((i % 7) - 3) * 1e-3;
const shapes = new Map();
{
  const g = new Graph();
  const iw = new InputWeights(g);
  buildTinyVelocity(g, config, iw, inputs(g, 1));
  for (const [k, s] of iw.shapes) shapes.set(k, s);
}
const source = memoryWeightSource(
  new Map([...weights].map(([k, v]) => [k, { dtype: "float32", shape: shapes.get(k), data: v }])),
);

function inputs(g, B) {
  const f = (n, s) => g.input(n, "float32", s);
  return {
    xt: f("xt", [B, TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS]),
    t: f("t", [B]),
    context: f("context", [B, TINY_IMAGE_TOKENS, TINY_TOKEN_CHANNELS]),
    text: f("text", [B, TINY_TEXT_TOKENS, V]),
  };
}
let seed = 3;
const rand = (n) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 16807) % 2147483647;
    return (seed / 2147483647) * 2 - 1;
  });
function feedsOf(g, B, named = new Map()) {
  const feeds = {};
  for (const t of g.inputs) {
    const name = t.source.name;
    if (named.has(name)) feeds[name] = named.get(name);
    else if (name === "text") {
      const a = new Float32Array(t.size);
      for (let i = 0; i < B * TINY_TEXT_TOKENS; i++)
        a[i * V + (i % 12 < 8 ? 2 + ((i * 7) % (V - 2)) : 0)] = 1;
      feeds[name] = a;
    } else if (name === "t") feeds[name] = rand(B).map((v) => Math.abs(v));
    else feeds[name] = rand(t.size);
  }
  return feeds;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
async function time(session, feeds, reps = REPS) {
  await session.run(feeds);
  const ms = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

async function matmulGflops() {
  const n = 1024;
  const g = new Graph("matmul");
  const a = g.input("a", "float32", [n, n]);
  const b = g.input("b", "float32", [n, n]);
  const s = await compile(g, { outputs: { c: ops.matmul(a, b) } });
  const ms = await time(s, { a: rand(n * n), b: rand(n * n) });
  await s.dispose();
  return (2 * n ** 3) / (ms * 1e6);
}

async function measure(B) {
  const g1 = new Graph("forward");
  const f1 = buildTinyVelocity(g1, config, source, inputs(g1, B));
  const s1 = await compile(g1, { outputs: { v: f1.velocity } });
  const forward = await time(s1, feedsOf(g1, B));
  await s1.dispose();

  const g2 = new Graph("train");
  const iw = new InputWeights(g2, "w/");
  const f2 = buildTinyVelocity(g2, config, iw, inputs(g2, B));
  const loss = ops.reduceMean(ops.mul(f2.velocity, f2.velocity));
  const outputs = { loss };
  for (const [i, t] of grad(loss, [...iw.inputs.values()]).entries()) outputs[`g${i}`] = t;
  const s2 = await compile(g2, { outputs });
  const train = await time(s2, feedsOf(g2, B, new Map([...weights].map(([k, v]) => [`w/${k}`, v]))));
  await s2.dispose();

  const g3 = new Graph("nft");
  const inp = inputs(g3, B);
  const th = buildTinyVelocity(g3, config, source, inp, { lora: { rank: 8, inputPrefix: "theta/" } });
  const old = buildTinyVelocity(g3, config, source, inp, { lora: { rank: 8, inputPrefix: "old/" } });
  const ref = buildTinyVelocity(g3, config, source, inp);
  const d = ops.sub(th.velocity, ops.add(ops.stopGradient(old.velocity), ops.stopGradient(ref.velocity)));
  const l3 = ops.reduceMean(ops.mul(d, d));
  const o3 = { l3 };
  for (const [i, t] of grad(
    l3,
    th.lora.map((p) => p.input),
  ).entries())
    o3[`g${i}`] = t;
  const s3 = await compile(g3, { outputs: o3 });
  const nft = await time(s3, feedsOf(g3, B));
  await s3.dispose();
  return { forward_ms: forward, train_step_ms: train, nft_lora_step_ms: nft };
}

const baseline = await matmulGflops();
const b4 = await measure(4);
const b8 = await measure(8);
await closeDefaultRuntime();
const round = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number(v.toFixed(1))]));
const result = {
  parameters: [...weights.values()].reduce((n, v) => n + v.length, 0),
  matmul_1024_gflops: Number(baseline.toFixed(1)),
  batch4: round(b4),
  batch8: round(b8),
  pytorch_anchor_batch4_ms: PYTORCH,
  speedup_vs_pytorch_forward: PYTORCH.forward.map((p) => Number((p / b4.forward_ms).toFixed(2))),
  speedup_vs_pytorch_forward_backward: PYTORCH.train.map((p) => Number((p / b4.train_step_ms).toFixed(2))),
};
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
mkdirSync(path.join(root, ".perf"), { recursive: true });
const file = path.join(root, ".perf", "adapter-tiny-model.json");
writeFileSync(
  file,
  `${JSON.stringify({ name: "adapter-tiny-model", date: new Date().toISOString(), ...result }, null, 2)}\n`,
);
console.log(JSON.stringify(result, null, 2));
console.log(`→ ${path.relative(root, file)}`);
