#!/usr/bin/env node
// Screens Edit-R1 settings for the embedded default on validation edits, never on the benchmark's: trains
// the tiny model with `trainDefaults.config` plus the overrides given, and at each evaluation step scores the
// EMA LoRA (the weights `pnpm train` benchmarks) on held-out edits of validation seeds other than the shapes
// benchmark's (20251016). Prints one JSON line per evaluation, with the wall time of the training so far and
// the machine's load. Runs against dist (build the tiny adapter first).
//   node adapters/tiny/scripts/sweep-rl.mjs --config '{"optimizer":{"lr":3e-3}}' --seed 42 \
//     --eval 20,40,60,80 --lora '{"rank":8}' --rollout-steps 6 --emas 0.95 --out /tmp/sweep-a
import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { EditDataset, Ema, samplerByName, train } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
// The rewards package is not a dependency of the adapter; the script runs inside the monorepo.
import { createShapesJudgeReward } from "../../../packages/rewards/dist/index.js";
import { adapter, verifierScore, writeTinyTrainData } from "../dist/index.js";

const { values } = parseArgs({
  options: {
    config: { type: "string", default: "{}" },
    seed: { type: "string", default: "42" },
    eval: { type: "string", default: "20,40,60,80" },
    lora: { type: "string" },
    "rollout-steps": { type: "string" },
    // Validation: held-out edits of these generator seeds (each `count` items), one noise seed each.
    "val-seeds": { type: "string", default: "1,2" },
    count: { type: "string", default: "96" },
    out: { type: "string", default: "/tmp/tiny-sweep" },
    label: { type: "string", default: "" },
    base: { type: "boolean", default: false },
    // Extra EMAs of θ with these maximum decays (the trainer's warm-up formula), scored beside the run's own.
    // Trains one step per train() call (resuming each time) to see every θ, so it is slower.
    emas: { type: "string" },
  },
});
const BENCHMARK_SEED = 20251016;
const valSeeds = values["val-seeds"].split(",").map(Number);
if (valSeeds.includes(BENCHMARK_SEED)) throw new Error("--val-seeds must not include the benchmark's seed");
const count = Number(values.count);
const evalSteps = values.eval.split(",").map(Number);
const overrides = JSON.parse(values.config);
const defaults = adapter.trainDefaults.config;
const config = {
  ...defaults,
  ...overrides,
  optimizer: { ...defaults.optimizer, ...overrides.optimizer },
  filter: { ...defaults.filter, ...overrides.filter },
  nft: { ...defaults.nft, ...overrides.nft },
  seed: Number(values.seed),
  checkpointEvery: 1000,
  sampleGridEvery: 0,
  keepCheckpoints: 1,
};
rmSync(values.out, { recursive: true, force: true });
const policy = await adapter.loadPolicy({
  ...(values.lora ? { loraConfig: JSON.parse(values.lora) } : {}),
  ...(values["rollout-steps"] ? { steps: Number(values["rollout-steps"]) } : {}),
});
const prompts = await EditDataset.load(await writeTinyTrainData(`${values.out}/data`));
const reward = createShapesJudgeReward();

async function validate(lora) {
  const per = [];
  for (const s of valSeeds) {
    const r = await verifierScore(policy.editor({ seed: s, ...(lora ? { lora } : {}) }), { count, seed: s });
    per.push(r.mean);
  }
  return per.reduce((a, b) => a + b, 0) / per.length;
}

const base = values.base ? await validate(undefined) : undefined;
const extraDecays = values.emas ? values.emas.split(",").map(Number) : [];
const emas = extraDecays.map((d) => new Ema(policy.initialParameters(), d));
const trainTo = (steps, checkpointEvery) =>
  train({
    policy,
    sampler: samplerByName(adapter.trainDefaults.sampler ?? "dpm2"),
    reward,
    prompts,
    outDir: `${values.out}/run`,
    config: { ...config, steps, checkpointEvery },
    resume: true,
    progress: null,
  });
let trainSeconds = 0;
let done = 0;
for (const steps of evalSteps) {
  const t0 = performance.now();
  let result;
  if (emas.length === 0) result = await trainTo(steps, steps);
  else
    for (; done < steps; done++) {
      result = await trainTo(done + 1, 1);
      for (const e of emas) e.update(result.params, done);
    }
  done = steps;
  trainSeconds += (performance.now() - t0) / 1000;
  const val = await validate(result.emaParams);
  const extra = {};
  for (const [i, e] of emas.entries())
    extra[`val_ema${extraDecays[i]}`] = Number((await validate(e.params)).toFixed(4));
  console.log(
    JSON.stringify({
      label: values.label,
      seed: config.seed,
      steps,
      val: Number(val.toFixed(4)),
      ...extra,
      ...(base !== undefined ? { base: Number(base.toFixed(4)) } : {}),
      trainSeconds: Math.round(trainSeconds),
      load1: Number(loadavg()[0].toFixed(2)),
      rewardMean: Number(result.metrics.at(-1)?.rewardMean.toFixed(3)),
    }),
  );
}
await reward.close?.();
await policy.dispose();
await closeDefaultRuntime();
