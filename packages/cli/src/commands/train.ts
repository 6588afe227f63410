import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  type AdapterTrainDefaults,
  type BenchmarkReport,
  ConfigError,
  EditDataset,
  fsProblem,
  imageGridPng,
  type RolloutExecutor,
  RUN_LAYOUT,
  RunDirectory,
  renderReport,
  resolveTrainConfig,
  train as runTraining,
  samplerByName,
  type TrainConfigInput,
} from "@edit-r1/core";
import { writeFileAtomic } from "@edit-r1/engine";
import {
  createRewardFromSpec,
  createShapesJudgeReward,
  JudgeConfigError,
  parseRewardSpec,
} from "@edit-r1/rewards";
import {
  FolderVersionStore,
  parseQueueUrl,
  type QueueLocation,
  QueueRollouts,
  WorkersConfigError,
} from "@edit-r1/workers";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, progressLine, stringFlag } from "../context.js";
import { checkOutFlag } from "../out-folder.js";
import { checkAdapterFlags, createBenchmark, loadAdapter } from "../registry.js";
import { adapterOptions } from "./bench.js";

/** What a training run's folder holds: the trainer's files plus what this command adds. */
const TRAIN_LAYOUT = {
  files: [...RUN_LAYOUT.files, "benchmark.md", "before-after.png"],
  folders: [...RUN_LAYOUT.folders, "data", "lora", "bench-before", "bench-after", "rollout-versions"],
};

/** A reward spec problem (syntax, kind, options) as a usage error naming --reward. */
function rewardSpecError(spec: string, err: unknown): unknown {
  return err instanceof JudgeConfigError ? new UsageError(`--reward ${spec}: ${err.message}.`) : err;
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

function readConfig(path: string | undefined): TrainConfigInput {
  if (!path) return {};
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`--config ${path}: cannot read it (${fsProblem(err)}).`);
  }
  try {
    return JSON.parse(text) as TrainConfigInput;
  } catch (err) {
    throw new UsageError(`--config ${path}: not valid JSON (${(err as Error).message}).`);
  }
}

/** The adapter's embedded training set, written once into the run folder (a resumed run reuses it). */
async function defaultTrainData(
  outDir: string,
  adapterName: string,
  defaults: AdapterTrainDefaults,
): Promise<string> {
  if (!defaults.writeTrainData) {
    throw new UsageError(`--data is required for adapter "${adapterName}" (an Edit-R1 JSONL file).`);
  }
  const existing = join(outDir, "data", "train_metadata.jsonl");
  return existsSync(existing) ? existing : defaults.writeTrainData(join(outDir, "data"));
}

/** A before/after table of the benchmark, category by category. */
export function comparisonTable(before: BenchmarkReport, after: BenchmarkReport): string {
  const rows = Object.keys(before.categories).map((c) => {
    const b = before.categories[c]!.mean;
    const a = after.categories[c]?.mean ?? Number.NaN;
    return `| ${c} | ${b.toFixed(3)} | ${a.toFixed(3)} | ${(a - b >= 0 ? "+" : "") + (a - b).toFixed(3)} |`;
  });
  const d = after.overall - before.overall;
  return [
    `| ${before.benchmark} | base | Edit-R1 | change |`,
    "|---|---|---|---|",
    ...rows,
    `| **overall** | **${before.overall.toFixed(3)}** | **${after.overall.toFixed(3)}** | **${(d >= 0 ? "+" : "") + d.toFixed(3)}** |`,
  ].join("\n");
}

/**
 * `edit-r1 train`: Edit-R1 post-training of an adapter. With no flags it runs the embedded default: the tiny
 * model on shapes-world data with the shapes judge, and the shapes benchmark before and after.
 *
 * Every input is checked before anything is written: flags and adapter options, the output folder (in words),
 * an earlier run's checkpoints without --resume, the reward spec, and the data file with its images. Each
 * is a usage error (exit 2) naming its flag, except data-file contents (exit 1, naming the lines).
 */
export async function train(ctx: CommandContext): Promise<number> {
  const adapterName = stringFlag(ctx, "adapter") ?? "tiny";
  const adapter = await loadAdapter(adapterName);
  const options = adapterOptions(ctx);
  checkAdapterFlags(adapter, options, "train");
  const defaults = adapter.trainDefaults ?? {};
  const resume = Boolean(ctx.values.resume);
  const outDir = stringFlag(ctx, "out") ?? join("runs", `${adapterName}-${timestamp()}`);

  const steps = intFlag(ctx, "steps", 1);
  const seed = intFlag(ctx, "seed");
  const rolloutLag = intFlag(ctx, "rollout-lag", 0);
  const config: TrainConfigInput = {
    ...defaults.config,
    ...readConfig(stringFlag(ctx, "config")),
    ...(steps !== undefined ? { steps } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(rolloutLag !== undefined ? { rolloutLag } : {}),
  };
  const workersUrl = stringFlag(ctx, "workers");
  let queue: QueueLocation | undefined;
  try {
    queue = workersUrl === undefined ? undefined : parseQueueUrl(workersUrl, "--workers");
  } catch (err) {
    if (err instanceof WorkersConfigError) throw new UsageError(`${err.message}.`);
    throw err;
  }
  if (stringFlag(ctx, "store") !== undefined && !queue)
    throw new UsageError("--store is where rollout workers read the policy versions; it needs --workers.");

  try {
    resolveTrainConfig(config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new UsageError(
      `${stringFlag(ctx, "config") ? `--config ${stringFlag(ctx, "config")}: ` : ""}${err.message}.`,
    );
  }
  checkOutFlag(outDir, TRAIN_LAYOUT);
  if (resume && !existsSync(outDir))
    throw new UsageError(`--resume: ${outDir} does not exist; pass the --out of the run.`);
  const latest = existsSync(outDir) ? new RunDirectory(outDir).latestCheckpoint() : null;
  if (latest && !resume)
    throw new UsageError(
      `--out ${outDir} already holds checkpoints (newest: step ${latest.step}); add --resume to continue ` +
        "that run, or choose another --out.",
    );
  const dataFlag = stringFlag(ctx, "data");
  if (dataFlag === undefined && !defaults.writeTrainData)
    throw new UsageError(`--data is required for adapter "${adapterName}" (an Edit-R1 JSONL file).`);
  const rewardSpec = stringFlag(ctx, "reward") ?? defaults.reward ?? "mllm";
  try {
    parseRewardSpec(rewardSpec);
  } catch (err) {
    throw rewardSpecError(rewardSpec, err);
  }
  if (dataFlag !== undefined) ctx.err(`data: ${dataFlag}`);
  let prompts = dataFlag === undefined ? undefined : await EditDataset.load(dataFlag);
  const reward = await createRewardFromSpec(rewardSpec, {
    env: ctx.env,
    log: (line) => ctx.err(line),
    factories: { shapes: () => createShapesJudgeReward() },
  }).catch((err: unknown) => {
    throw rewardSpecError(rewardSpec, err);
  });
  let dataPath = dataFlag;
  let rewardClosed = false;
  const closeReward = async () => {
    if (rewardClosed) return;
    rewardClosed = true;
    await reward.close?.();
  };
  try {
    if (!prompts) {
      dataPath = await defaultTrainData(outDir, adapterName, defaults);
      ctx.err(`data: ${dataPath}`);
      prompts = await EditDataset.load(dataPath);
    }
    ctx.err(`adapter: ${adapterName}  reward: ${rewardSpec}  out: ${outDir}`);

    const benchName = ctx.values["no-bench"] ? undefined : defaults.benchmark;
    const benchmark = benchName ? await createBenchmark(benchName, { env: ctx.env }) : undefined;
    const runBench = async (label: string, lora: string | undefined, fresh: boolean) => {
      if (!benchmark) return undefined;
      const dir = join(outDir, `bench-${label}`);
      // Benchmarks reuse outputs found in their folder; after more training those belong to an older LoRA.
      if (fresh) rmSync(dir, { recursive: true, force: true });
      const editor = await adapter.loadEditor({ ...options, lora });
      try {
        const report = await benchmark.run(editor, {
          outDir: dir,
          onProgress: progressLine(ctx, `benchmark (${label})`),
        });
        return report;
      } finally {
        await editor.close?.();
      }
    };

    const before = await runBench("before", options.lora, false);
    if (before) ctx.err(`benchmark before: ${before.overall.toFixed(3)}`);

    const policy = await adapter.loadPolicy!(options);
    const samplerName = defaults.sampler ?? "dpm2";
    let rollouts: RolloutExecutor | undefined;
    if (queue) {
      // The workers rebuild this policy from the spec, on their own device.
      const { device: _device, ...portable } = options;
      const store = new FolderVersionStore(stringFlag(ctx, "store") ?? join(outDir, "rollout-versions"));
      const workers = await QueueRollouts.open({
        location: queue,
        spec: { adapter: adapterName, options: portable, sampler: samplerName, data: resolve(dataPath!) },
        store,
        log: (line) => ctx.err(line),
      });
      ctx.err(
        `rollouts: on workers at ${queue.display} (${workers.describe()}); versions in ${store.location}; ` +
          `start workers with: edit-r1 worker --queue ${workersUrl} --adapter ${adapterName}`,
      );
      rollouts = workers;
    }
    let result: Awaited<ReturnType<typeof runTraining>>;
    try {
      result = await runTraining({
        policy,
        sampler: samplerByName(samplerName),
        reward,
        prompts,
        outDir,
        config,
        resume,
        signal: ctx.signal,
        // The trainer's progress lines go where the command's other messages go.
        progress: {
          write: (text: string) => {
            ctx.err(text.trimEnd());
            return true;
          },
        } as NodeJS.WritableStream,
        ...(rollouts ? { rollouts } : {}),
      });
    } finally {
      await closeReward();
    }
    const loraDir = result.loraDir;
    ctx.err(`trained to step ${result.step}; LoRA (EMA weights): ${loraDir}`);

    const after = await runBench("after", loraDir, true);
    if (before && after) {
      const table = comparisonTable(before, after);
      ctx.out(table);
      await writeFileAtomic(join(outDir, "benchmark.md"), `${table}\n`);
      await writeReport(outDir, before, after, benchmark);
    }
    ctx.out(`\nreport: ${join(outDir, "report.html")}`);
    ctx.out(`resume: edit-r1 train --adapter ${adapterName} --out ${outDir} --resume --steps <more>`);
    return 0;
  } finally {
    await closeReward();
  }
}

/** Rewrites report.html with the run's curves plus a before/after gallery of the benchmark. */
async function writeReport(
  outDir: string,
  before: BenchmarkReport,
  after: BenchmarkReport,
  benchmark: Awaited<ReturnType<typeof createBenchmark>> | undefined,
): Promise<void> {
  const run = new RunDirectory(outDir);
  const { decodeImage } = await import("@edit-r1/core");
  const keys = after.items.slice(0, 16).map((i) => i.key);
  const load = async (path: string) => decodeImage(readFileSync(join(outDir, path)));
  const rows: Awaited<ReturnType<typeof load>>[] = [];
  for (const key of keys) {
    const g = benchmark?.galleryImages?.({ key });
    if (!g?.source || !g.target) continue;
    rows.push(
      await load(join("bench-before", g.source)),
      await load(join("bench-before", `images/${key}.png`)),
      await load(join("bench-after", `images/${key}.png`)),
      await load(join("bench-before", g.target)),
    );
  }
  const gallery = [];
  if (rows.length) {
    const grid = join(outDir, "before-after.png");
    await writeFileAtomic(grid, await imageGridPng(rows, { columns: 4, scale: 4, gap: 4 }));
    gallery.push({ path: grid, caption: "each row: source · base model · after Edit-R1 · exact target" });
  }
  // The trainer's rollout grids stay in the report too.
  const samples = join(outDir, "samples");
  if (existsSync(samples)) {
    for (const f of readdirSync(samples)
      .filter((n) => n.endsWith(".png"))
      .sort()) {
      gallery.push({ path: join(samples, f), caption: `rollouts, ${f.replace(".png", "")}` });
    }
  }
  await writeFileAtomic(
    join(outDir, "report.html"),
    renderReport({
      title: `Edit-R1 run: ${outDir}`,
      metrics: run.readMetrics(),
      gallery,
      facts: {
        [`${before.benchmark} before`]: Number(before.overall.toFixed(4)),
        [`${after.benchmark} after`]: Number(after.overall.toFixed(4)),
      },
    }),
  );
}
