#!/usr/bin/env node
// Times the work of one Edit-R1 step on the tiny adapter, without a reward: rollouts of m prompts × K
// samples (6 DPM-Solver++(2M) steps) and the NFT training passes (5 timesteps per sample, micro-batch 8),
// plus a 64-item benchmark pass (12 Euler steps). Runs against dist.
//   node adapters/tiny/scripts/measure-rl-step.mjs [m=4] [K=8] [micro=8]
import { DEFAULT_NFT_SETTINGS, Rng } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { generateEdits } from "@edit-r1/shapes";
import { loadTinyAdapter, TINY_IMAGE_SIZE, TINY_LATENT_SIZE, verifierScore } from "../dist/index.js";

const m = Number(process.argv[2] ?? 4);
const K = Number(process.argv[3] ?? 8);
const micro = Number(process.argv[4] ?? 8);
const adapter = await loadTinyAdapter();
const prompts = generateEdits({ seed: 1, count: m, split: "train", size: TINY_IMAGE_SIZE });
const requests = prompts.flatMap((e) =>
  Array.from({ length: K }, (_, k) => ({
    key: `${e.key}#${k}`,
    instruction: e.instruction,
    source: e.source,
  })),
);
const theta = adapter.initialParameters();
const D = TINY_LATENT_SIZE;
const rng = new Rng(0);
const sec = (t0) => ((performance.now() - t0) / 1000).toFixed(2);

// Warm-up compiles (not counted).
await adapter.velocity(requests, theta)(rng.normals(requests.length * D), 1, 0);
const warmBatch = requests.slice(0, micro);
const nftBatch = (reqs, x0) => ({
  requests: reqs,
  x0,
  noise: rng.normals(reqs.length * D),
  t: Float64Array.from(reqs, () => 0.5),
  advantages: Float64Array.from(reqs, () => rng.normal()),
  validMask: new Uint8Array(reqs.length).fill(1),
  settings: DEFAULT_NFT_SETTINGS,
});
await adapter.lossAndGradients(nftBatch(warmBatch, rng.normals(micro * D)), theta, theta);

let t0 = performance.now();
const { x0 } = await adapter.defaultSampler.sample(
  rng.normals(requests.length * D),
  adapter.sigmas(requests),
  adapter.velocity(requests, theta),
);
await adapter.decode(x0, requests);
const rollout = sec(t0);
t0 = performance.now();
let passes = 0;
for (let ts = 0; ts < 5; ts++) {
  for (let at = 0; at < requests.length; at += micro) {
    const reqs = requests.slice(at, at + micro);
    await adapter.lossAndGradients(nftBatch(reqs, x0.slice(at * D, (at + reqs.length) * D)), theta, theta);
    passes++;
  }
}
const training = sec(t0);
t0 = performance.now();
const score = await verifierScore(adapter.editor(), { count: 64 });
const bench = sec(t0);
console.log(
  `m=${m} K=${K}: rollout ${rollout} s (${requests.length} samples × 6 steps), NFT training ${training} s ` +
    `(${passes} fused steps of ${micro}), 64-item benchmark ${bench} s (held-out mean ${score.mean.toFixed(3)})`,
);
await adapter.dispose();
await closeDefaultRuntime();
