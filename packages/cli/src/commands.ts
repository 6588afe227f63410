import type { CommandSpec } from "./args.js";

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "train",
    summary: "post-train an adapter with Edit-R1 (DiffusionNFT + MLLM judge)",
    usage:
      "edit-r1 train [--adapter tiny] [--config run.json] [--data train.jsonl] [--reward <spec>] [--steps N] [--out runs/x] [--resume]",
    options: {
      adapter: { type: "string", default: "tiny" },
      config: { type: "string" },
      data: { type: "string" },
      reward: { type: "string" },
      steps: { type: "string" },
      out: { type: "string" },
      resume: { type: "boolean" },
      seed: { type: "string" },
    },
  },
  {
    name: "bench",
    summary: "evaluate an adapter on a benchmark (imgedit, gedit, shapes)",
    usage:
      "edit-r1 bench --adapter <name> --benchmark imgedit|gedit|shapes [--judge <spec>] [--lora path] [--limit N] [--out dir]",
    options: {
      adapter: { type: "string" },
      benchmark: { type: "string" },
      judge: { type: "string" },
      lora: { type: "string" },
      limit: { type: "string" },
      out: { type: "string" },
    },
  },
  {
    name: "edit",
    summary: "edit one image with an adapter",
    usage: 'edit-r1 edit --adapter <name> --image in.png --instruction "…" [--lora path] --out out.png',
    options: {
      adapter: { type: "string" },
      model: { type: "string" },
      image: { type: "string" },
      instruction: { type: "string" },
      lora: { type: "string" },
      out: { type: "string" },
    },
  },
  {
    name: "judge",
    summary: "serve a local judge over the OpenAI-compatible API (`judge serve`)",
    usage: "edit-r1 judge serve [--model shapes] [--host 127.0.0.1] [--port N]",
    options: {
      model: { type: "string", default: "shapes" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
    },
  },
];
