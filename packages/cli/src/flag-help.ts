import type { CommandSpec } from "./args.js";

/** A flag's value placeholder (absent for switches) and what it does. */
type FlagHelp = readonly [value: string | undefined, what: string];

/** Flags that mean the same in every command that takes them (the adapter flags first). */
const COMMON: Readonly<Record<string, FlagHelp>> = {
  adapter: ["name", "the model to load; `edit-r1 adapters` lists them with what each takes"],
  base: [
    "name",
    "the base model, for adapters layered over several (uniworld: qwen-image-edit, flux-kontext)",
  ],
  model: ["dir|repo", "a local weights folder or a Hub repo id in the cache (default: the adapter's)"],
  device: [
    "cpu|cuda|webgpu",
    "where the model runs (default cpu); `edit-r1 adapters` lists each adapter's devices, `edit-r1 doctor` what loads here",
  ],
  lora: ["path", "a PEFT/diffusers LoRA folder or .safetensors file (a run's lora/)"],
  "lora-alpha": [
    "N",
    "the LoRA's lora_alpha when its folder has no adapter_config.json (a PEFT folder without its config is refused otherwise)",
  ],
  "lora-scale": ["s", "multiplies the LoRA's strength (default 1; 0 is the base model)"],
  seed: ["N", "sets --noise-seed and --init-seed (train: also the training seed)"],
  "noise-seed": ["N", "seed of each edit's starting noise"],
  "init-seed": ["N", "seed of a fresh LoRA's initialisation"],
  "sample-steps": ["N", "sampler steps (edit/bench: the protocol's; train: the rollouts')"],
  guidance: ["s", "guidance scale (FLUX's distilled guidance, or true CFG)"],
  dtype: ["float32|float16|bfloat16", "compute dtype of the transformer"],
  resolution: ["WxH", "output size (train: the rollout size), one of the adapter's"],
  out: ["dir", "where results go"],
  data: ["file|dir|repo", "the data"],
  steps: ["N", "how many steps"],
  force: [undefined, "replace what is there"],
};

/** Flags whose meaning depends on the command. */
const BY_COMMAND: Readonly<Record<string, Readonly<Record<string, FlagHelp>>>> = {
  train: {
    config: [
      "run.json",
      "training settings as JSON (TrainConfig: groupSize, promptsPerBatch, optimizer.lr, …)",
    ],
    data: [
      "train.jsonl",
      'Edit-R1 JSONL, one {"prompt", "image", "requirement"?} a line (default: the adapter\'s own)',
    ],
    reward: [
      "spec",
      "the reward: [weight*]kind[:target][?options], e.g. shapes or mllm:http://127.0.0.1:8000/v1?model=X",
    ],
    steps: ["N", "optimizer steps to reach (a resumed run continues up to N)"],
    out: ["dir", "the run folder (default runs/<adapter>-<time>); must not hold checkpoints unless --resume"],
    resume: [undefined, "continue the run in --out from its newest checkpoint"],
    "no-bench": [undefined, "skip the benchmark before and after training"],
    recompute: [
      undefined,
      "gradient checkpointing per transformer block (same loss and gradients, less memory, one more forward)",
    ],
    "attention-chunk": [
      "N",
      "attention N heads at a time in rollouts and training (same results; one chunk's scores in memory, not all heads')",
    ],
    workers: [
      "redis://host:port",
      "roll out on `edit-r1 worker` processes fed by this Redis queue ([/db][?queue=name]; one trainer per queue)",
    ],
    "rollout-lag": [
      "N",
      "optimizer steps a rollout may lag behind (default 0: synchronous, the same numbers as in one process)",
    ],
    store: [
      "dir",
      "where the old-policy versions go for the workers (default <out>/rollout-versions; must be shared with them)",
    ],
  },
  worker: {
    queue: ["redis://host:port", "the trainer's --workers queue ([/db][?queue=name])"],
    adapter: ["name", "the adapter this worker runs; jobs of another adapter fail with a clear message"],
    store: ["dir|url", "where the trainer's version store is seen from here (default: the path jobs carry)"],
    data: ["train.jsonl", "where the training data is seen from here (default: the path jobs carry)"],
    "lock-seconds": [
      "N",
      "how long a job stays this worker's without a heartbeat; a dead worker's job runs elsewhere after it (default 30)",
    ],
    name: ["text", "this worker's name in logs and counts (default host:pid)"],
  },
  bench: {
    benchmark: ["imgedit|gedit|shapes", "the benchmark"],
    judge: ["spec", "the judge: mllm:<url>?model=… (default: the EDIT_R1_JUDGE_* variables)"],
    data: ["dir|repo", "the benchmark's data: a local folder or a Hub dataset id"],
    language: ["en|cn", "GEdit's instruction language"],
    subset: ["full|intersection", "GEdit's subset"],
    limit: ["N", "run only the first N items"],
    out: ["dir", "where results.json, results.md and gallery.html go (outputs found there are reused)"],
  },
  edit: {
    image: ["file", "the source image (repeat for multi-image models)"],
    instruction: ["text", 'what to change, e.g. "make the sky purple"'],
    requirement: ["text", "what the result must satisfy (passed to adapters that use it)"],
    out: ["file.png", "where the edited PNG goes"],
  },
  pretrain: {
    steps: ["N", "pretraining steps (default 1250)"],
    seed: ["N", "the pretraining seed"],
    batch: ["N", "pairs per step (default 32)"],
    lr: ["x", "learning rate (default 1e-3)"],
    out: ["dir", "where tiny.safetensors and config.json go"],
  },
  replica: {
    out: ["dir", "the folder to write (must be new unless --force)"],
    seed: ["N", "seed of the random weights"],
  },
  download: {
    include: ["pattern", "only files matching the glob (repeatable)"],
    dataset: [undefined, "the id is a data set, not a model"],
  },
  judge: {
    device: ["cpu|cuda", "where an in-process judge (qwen-vl:…) runs (default cpu)"],
  },
  doctor: {
    json: [undefined, "print the report as JSON (providers, CUDA provider links, GPUs, fixes)"],
  },
  plan: {
    batch: ["N", "samples per rollout batch and training micro-batch (default 1)"],
    train: [undefined, "also plan the fused training step"],
    recompute: [
      undefined,
      "gradient checkpointing per transformer block (full-size shapes, or --model where the adapter checkpoints)",
    ],
    "attention-chunk": [
      "N",
      "plan attention N heads at a time (adapters that declare it; e.g. 4 of FLUX's or Qwen-Image's 24 heads)",
    ],
    json: [undefined, "print the plan as JSON"],
  },
};

/**
 * The flags a command takes, one line each with its value and what it does: every flag the parser accepts is
 * listed (generated from the command's options), so `--help` cannot omit one.
 */
export function flagHelp(spec: CommandSpec): string {
  const rows = Object.entries(spec.options ?? {}).map(([name, option]) => {
    const [value, what] = BY_COMMAND[spec.name]?.[name] ??
      COMMON[name] ?? [option.type === "string" ? "value" : undefined, ""];
    const repeat = option.multiple ? " …" : "";
    const flag: string = `--${name}${value && option.type === "string" ? ` <${value}>` : ""}${repeat}`;
    return [flag, what] as const;
  });
  rows.push(["-h, --help", "this text"]);
  const width = Math.min(34, Math.max(...rows.map(([f]) => f.length)));
  return rows.map(([f, what]) => `  ${f.padEnd(width)}  ${what}`.trimEnd()).join("\n");
}
