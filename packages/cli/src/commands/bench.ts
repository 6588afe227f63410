import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type AdapterLoadOptions, benchmarkMarkdown, checkAdapter } from "@edit-r1/core";
import {
  type CommandContext,
  intFlag,
  numberFlag,
  progressLine,
  requireFlag,
  stringFlag,
} from "../context.js";
import { createBenchmark, loadAdapter } from "../registry.js";

/** Adapter loading flags shared by bench, edit and train. */
export function adapterOptions(ctx: CommandContext): AdapterLoadOptions {
  const device = stringFlag(ctx, "device");
  return {
    model: stringFlag(ctx, "model"),
    device: device === "cuda" ? "cuda" : device === undefined || device === "cpu" ? "cpu" : (device as "cpu"),
    lora: stringFlag(ctx, "lora"),
    loraScale: numberFlag(ctx, "lora-scale"),
    seed: intFlag(ctx, "seed"),
    steps: intFlag(ctx, "sample-steps", 1),
  };
}

/** `edit-r1 bench`: runs a benchmark against an adapter and writes results.json, results.md and gallery.html. */
export async function bench(ctx: CommandContext): Promise<number> {
  const adapterName = requireFlag(ctx, "adapter", "e.g. --adapter tiny");
  const benchmarkName = requireFlag(ctx, "benchmark", "imgedit, gedit or shapes");
  const options = adapterOptions(ctx);
  const adapter = await loadAdapter(adapterName);
  checkAdapter(adapter, options, "edit");
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
