import type { CommandSpec } from "./args.js";
import type { CommandContext } from "./context.js";

export interface Command extends CommandSpec {
  run: (ctx: CommandContext) => Promise<number>;
}

const adapterFlags = {
  adapter: { type: "string" },
  base: { type: "string" },
  model: { type: "string" },
  device: { type: "string" },
  lora: { type: "string" },
  "lora-alpha": { type: "string" },
  "lora-scale": { type: "string" },
  seed: { type: "string" },
  "noise-seed": { type: "string" },
  "init-seed": { type: "string" },
  "sample-steps": { type: "string" },
  guidance: { type: "string" },
  dtype: { type: "string" },
  resolution: { type: "string" },
  // Heads per attention chunk in the transformer (adapters that declare it): edit, bench, train, plan.
  "attention-chunk": { type: "string" },
} as const;

export const COMMANDS: readonly Command[] = [
  {
    name: "train",
    summary: "post-train an adapter with Edit-R1 (DiffusionNFT + judge reward)",
    usage:
      "edit-r1 train [--adapter tiny] [--config run.json] [--data train.jsonl] [--reward <spec>] [--steps N] [--out runs/x] [--resume] [--seed N] [--no-bench] [--workers redis://host:port] [--rollout-lag N] [--store DIR] [--recompute] [--attention-chunk N] [adapter flags]",
    options: {
      ...adapterFlags,
      config: { type: "string" },
      data: { type: "string" },
      reward: { type: "string" },
      steps: { type: "string" },
      out: { type: "string" },
      resume: { type: "boolean" },
      "no-bench": { type: "boolean" },
      workers: { type: "string" },
      "rollout-lag": { type: "string" },
      store: { type: "string" },
      recompute: { type: "boolean" },
    },
    run: async (ctx) => (await import("./commands/train.js")).train(ctx),
  },
  {
    name: "worker",
    summary: "a rollout worker: takes a trainer's rollout jobs from a Redis queue (train --workers)",
    usage:
      "edit-r1 worker --queue redis://host:port[/db][?queue=name] --adapter <name> [--device cpu|cuda|webgpu] [--model dir|repo] [--store DIR|URL] [--data train.jsonl] [--lock-seconds 30] [--name NAME]",
    options: {
      queue: { type: "string" },
      adapter: { type: "string" },
      device: { type: "string" },
      model: { type: "string" },
      store: { type: "string" },
      data: { type: "string" },
      "lock-seconds": { type: "string" },
      name: { type: "string" },
    },
    run: async (ctx) => (await import("./commands/worker.js")).worker(ctx),
  },
  {
    name: "bench",
    summary: "evaluate an adapter on a benchmark (imgedit, gedit, shapes)",
    usage:
      "edit-r1 bench --adapter <name> --benchmark imgedit|gedit|shapes [--judge <spec>] [--data dir|repo] [--language en|cn] [--subset full|intersection] [--lora path] [--attention-chunk N] [--limit N] [--out dir]",
    options: {
      ...adapterFlags,
      benchmark: { type: "string" },
      judge: { type: "string" },
      data: { type: "string" },
      language: { type: "string" },
      subset: { type: "string" },
      limit: { type: "string" },
      out: { type: "string" },
    },
    run: async (ctx) => (await import("./commands/bench.js")).bench(ctx),
  },
  {
    name: "edit",
    summary: "edit one image with an adapter",
    usage:
      'edit-r1 edit --adapter <name> [--model dir|repo] --image in.png [--image in2.png …] --instruction "…" [--lora path] [--attention-chunk N] --out out.png',
    options: {
      ...adapterFlags,
      // Repeated for multi-image models (Qwen-Image-Edit-2509/2511: up to 3).
      image: { type: "string", multiple: true },
      instruction: { type: "string" },
      requirement: { type: "string" },
      out: { type: "string" },
    },
    run: async (ctx) => (await import("./commands/edit.js")).edit(ctx),
  },
  {
    name: "judge",
    summary:
      "serve a local judge over the OpenAI-compatible API (`judge serve`), or write a tiny Qwen2.5-VL judge (`judge replica`)",
    usage:
      "edit-r1 judge serve [--model shapes|qwen-vl:<dir|repo>[?…]] [--device cpu|cuda] [--dtype float32|float16] [--host 127.0.0.1] [--port N] [--api-key-env VAR]\n       edit-r1 judge replica --out DIR [--seed N] [--force]",
    options: {
      model: { type: "string" },
      device: { type: "string" },
      dtype: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "api-key-env": { type: "string" },
      out: { type: "string" },
      seed: { type: "string" },
      force: { type: "boolean" },
    },
    run: async (ctx) => (await import("./commands/judge-serve.js")).judgeServe(ctx),
  },
  {
    name: "adapters",
    summary: "list the adapters this command can load, with what each is",
    usage: "edit-r1 adapters",
    options: {},
    run: async (ctx) => (await import("./commands/adapters.js")).adapters(ctx),
  },
  {
    name: "pretrain",
    summary: "pretrain the embedded tiny model by supervised flow matching (seeded, resumable)",
    usage:
      "edit-r1 pretrain [--adapter tiny] [--steps 1250] [--seed 0] [--batch 32] [--lr 1e-3] [--out runs/pretrain-tiny]",
    options: {
      adapter: { type: "string" },
      steps: { type: "string" },
      seed: { type: "string" },
      batch: { type: "string" },
      lr: { type: "string" },
      out: { type: "string" },
    },
    run: async (ctx) => (await import("./commands/pretrain.js")).pretrain(ctx),
  },
  {
    name: "replica",
    summary:
      "write a tiny random-weight checkpoint of an adapter's model in its real Hub layout (smoke tests)",
    usage: "edit-r1 replica --adapter <name> [--base <base>] --out dir [--seed N] [--force]",
    options: {
      adapter: { type: "string" },
      base: { type: "string" },
      out: { type: "string" },
      seed: { type: "string" },
      force: { type: "boolean" },
    },
    run: async (ctx) => (await import("./commands/replica.js")).replica(ctx),
  },
  {
    name: "download",
    summary: "fill the Hugging Face cache with a model or data set (needs the network)",
    usage:
      "edit-r1 download <org/name> [--include 'pattern']… [--dataset] | --adapter <name> [--base <base>]",
    options: {
      adapter: { type: "string" },
      base: { type: "string" },
      include: { type: "string", multiple: true },
      dataset: { type: "boolean" },
    },
    run: async (ctx) => (await import("./commands/download.js")).download(ctx),
  },
  {
    name: "doctor",
    summary:
      "which execution providers load here (cpu, webgpu, cuda), the CUDA the provider links, the GPU, and how to fix what is missing",
    usage: "edit-r1 doctor [--json]",
    options: { json: { type: "boolean" } },
    run: async (ctx) => (await import("./commands/doctor.js")).doctor(ctx),
  },
  {
    name: "plan",
    summary: "predict memory per phase (rollout, training step) for an adapter at a resolution, before a run",
    usage:
      "edit-r1 plan --adapter <name> [--model dir] [--resolution WxH] [--device cpu|cuda|webgpu] [--dtype float32|float16|bfloat16] [--batch N] [--train] [--recompute] [--attention-chunk N] [--json]",
    options: {
      ...adapterFlags,
      batch: { type: "string" },
      train: { type: "boolean" },
      recompute: { type: "boolean" },
      json: { type: "boolean" },
    },
    run: async (ctx) => (await import("./commands/plan.js")).plan(ctx),
  },
];
