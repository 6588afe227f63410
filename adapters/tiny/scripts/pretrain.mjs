#!/usr/bin/env node
// Pretrains the tiny editor by supervised flow matching (runs against dist: build the package first).
// `edit-r1 pretrain --adapter tiny` runs the same training; this script adds held-out snapshots for picking one.
//
// The shipped weights (adapters/tiny/weights/) are the step-1250 snapshot of this run (about 10 min on two
// cores; the run went on to step 2000, where the held-out mean had reached 0.48):
//   pnpm --filter @edit-r1/adapter-tiny build
//   node adapters/tiny/scripts/pretrain.mjs --steps 2000 --seed 0 --batch 32 --lr 1e-3 --out adapters/tiny/.pretrain
//   cp adapters/tiny/.pretrain/snapshots/step-1250/* adapters/tiny/weights/
// The learning rate is constant, so `--steps 1250` ends at the same weights (up to onnxruntime's summation order).
//
// Every --eval-every steps it scores a snapshot on 64 held-out shapes edits (12 Euler steps) and saves it
// under <out>/snapshots/step-<N>/, so the deliberately imperfect checkpoint can be picked by its score.
// Rerunning with the same --out resumes from <out>/pretrain-state.safetensors.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { closeDefaultRuntime } from "@edit-r1/engine";
import {
  pretrainTiny,
  TINY_DEFAULT_SHIFT,
  TinyModel,
  tinyEditor,
  verifierScore,
  writeTinyWeights,
} from "../dist/index.js";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "2000" },
    seed: { type: "string", default: "0" },
    batch: { type: "string", default: "32" },
    lr: { type: "string", default: "1e-3" },
    out: { type: "string", default: "adapters/tiny/.pretrain" },
    "eval-every": { type: "string", default: "250" },
    "eval-count": { type: "string", default: "64" },
  },
});
const evalEvery = Number(values["eval-every"]);
const log = (s) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
let sum = 0;
let n = 0;
const result = await pretrainTiny({
  steps: Number(values.steps),
  seed: Number(values.seed),
  batchSize: Number(values.batch),
  lr: Number(values.lr),
  out: values.out,
  async onProgress(p) {
    sum += p.loss;
    n++;
    if (p.step % 25 === 0) {
      log(
        `step ${p.step}/${p.steps} loss ${(sum / n).toFixed(4)} grad ${p.gradNorm.toFixed(3)} ${(p.elapsedMs / 1000).toFixed(0)} s`,
      );
      sum = 0;
      n = 0;
    }
    if (evalEvery > 0 && p.step % evalEvery === 0) {
      const weights = p.snapshot();
      const model = new TinyModel(weights);
      try {
        const score = await verifierScore(tinyEditor(model, TINY_DEFAULT_SHIFT), {
          count: Number(values["eval-count"]),
        });
        const cats = Object.entries(score.categories)
          .map(([c, v]) => `${c} ${v.mean.toFixed(2)}`)
          .join(", ");
        log(`step ${p.step}: held-out verifier mean ${score.mean.toFixed(3)} (${cats})`);
        weights.config.training = { ...weights.config.training, heldoutVerifierMean: score.mean };
        await writeTinyWeights(join(values.out, "snapshots", `step-${p.step}`), weights);
      } finally {
        await model.dispose();
      }
    }
  },
});
log(`done: ${result.steps} steps, recent loss ${result.recentLoss.toFixed(4)}; weights in ${values.out}`);
await closeDefaultRuntime();
