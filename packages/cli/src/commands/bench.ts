import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type AdapterLoadOptions, benchmarkMarkdown } from "@edit-r1/core";
import { UsageError } from "../args.js";
import {
  type CommandContext,
  intFlag,
  numberFlag,
  progressLine,
  requireFlag,
  stringFlag,
} from "../context.js";
import { checkOutFlag } from "../out-folder.js";
import { checkAdapterFlags, createBenchmark, loadAdapter } from "../registry.js";

const DTYPES = ["float32", "float16", "bfloat16"] as const;

/** What a benchmark keeps in its output folder. */
export const BENCH_LAYOUT = {
  files: ["results.json", "results.md", "gallery.html", "items.jsonl", "run-identity.json"],
  folders: ["images", "reference"],
};

/**
 * Adapter loading flags shared by bench, edit and train. `--seed` sets both the noise seed and the LoRA-init
 * seed (and, for train, the training seed); `--noise-seed` and `--init-seed` set one each.
 */
export function adapterOptions(ctx: CommandContext): AdapterLoadOptions {
  const device = stringFlag(ctx, "device");
  const dtype = stringFlag(ctx, "dtype");
  if (dtype !== undefined && !(DTYPES as readonly string[]).includes(dtype))
    throw new UsageError(`--dtype must be one of ${DTYPES.join(", ")}, got "${dtype}".`);
  const resolution = stringFlag(ctx, "resolution");
  const size = resolution === undefined ? undefined : /^(\d+)x(\d+)$/.exec(resolution);
  if (resolution !== undefined && !size)
    throw new UsageError(`--resolution must be WIDTHxHEIGHT, e.g. 512x512; got "${resolution}".`);
  const seed = intFlag(ctx, "seed");
  const noiseSeed = intFlag(ctx, "noise-seed") ?? seed;
  const initSeed = intFlag(ctx, "init-seed") ?? seed;
  const options: AdapterLoadOptions = {
    device: (device ?? "cpu") as AdapterLoadOptions["device"],
    model: stringFlag(ctx, "model"),
    base: stringFlag(ctx, "base"),
    lora: stringFlag(ctx, "lora"),
    loraAlpha: numberFlag(ctx, "lora-alpha"),
    loraScale: numberFlag(ctx, "lora-scale"),
    noiseSeed,
    initSeed,
    steps: intFlag(ctx, "sample-steps", 1),
    guidance: numberFlag(ctx, "guidance"),
    dtype: dtype as AdapterLoadOptions["dtype"],
    resolution: size ? [Number(size[1]), Number(size[2])] : undefined,
    // Only commands that take --recompute (train, plan) can set it.
    recompute: ctx.values.recompute === true ? true : undefined,
    attentionHeadChunk: intFlag(ctx, "attention-chunk", 1),
  };
  // Absent flags stay absent, so an adapter's own defaults apply.
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as AdapterLoadOptions;
}

/** `edit-r1 bench`: runs a benchmark against an adapter and writes results.json, results.md and gallery.html. */
export async function bench(ctx: CommandContext): Promise<number> {
  const adapterName = requireFlag(ctx, "adapter", "e.g. --adapter tiny");
  const benchmarkName = requireFlag(ctx, "benchmark", "imgedit, gedit or shapes");
  const options = adapterOptions(ctx);
  const adapter = await loadAdapter(adapterName);
  checkAdapterFlags(adapter, options, "edit");
  const limit = intFlag(ctx, "limit", 1);
  const benchmark = await createBenchmark(benchmarkName, {
    judge: stringFlag(ctx, "judge"),
    data: stringFlag(ctx, "data"),
    language: stringFlag(ctx, "language"),
    subset: stringFlag(ctx, "subset"),
    env: ctx.env,
  });
  const outDir =
    stringFlag(ctx, "out") ??
    join("runs", `bench-${adapterName}-${benchmarkName}${options.lora ? "-lora" : ""}`);
  checkOutFlag(outDir, BENCH_LAYOUT);
  const editor = await adapter.loadEditor(options);
  try {
    const report = await benchmark.run(editor, {
      limit,
      outDir,
      onProgress: progressLine(ctx, `${benchmarkName} · ${adapterName}`),
    });
    const table = join(outDir, "results.md");
    ctx.out(existsSync(table) ? readFileSync(table, "utf8") : benchmarkMarkdown(report));
    ctx.out(`\nresults: ${join(outDir, "results.json")}  gallery: ${join(outDir, "gallery.html")}`);
  } finally {
    await editor.close?.();
  }
  return 0;
}
