import { mkdir, mkdtemp, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import type { Adapter } from "@edit-r1/core";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, requireFlag, stringFlag } from "../context.js";
import { adapterNames, loadAdapter } from "../registry.js";

/**
 * `edit-r1 replica --adapter <name> [--base <base>] --out DIR [--seed N] [--force]`: a tiny random-weight checkpoint of the
 * adapter's model in its real Hub layout, for smoke-testing an install without the real weights. It is written
 * into a temporary folder beside DIR and renamed into place, so DIR is either absent, as it was, or complete.
 */
export async function replica(ctx: CommandContext): Promise<number> {
  const name = requireFlag(
    ctx,
    "adapter",
    "the adapter whose model to replicate, e.g. --adapter qwen-image-edit",
  );
  const outFlag = requireFlag(ctx, "out", "the folder to write the checkpoint into");
  const seed = intFlag(ctx, "seed") ?? 0;
  const base = stringFlag(ctx, "base");
  const force = ctx.values.force === true;
  const adapter = await loadAdapter(name);
  const write = adapter.cli.writeReplica;
  if (write === undefined) {
    const able = await adaptersWithReplica();
    throw new UsageError(
      `adapter "${name}" cannot write a replica of its model (its cli has no writeReplica). ` +
        (able.length
          ? `Adapters that can: ${able.join(", ")}.`
          : "None of the installed adapters can; install one that does."),
    );
  }
  if (typeof write !== "function")
    throw new UsageError(`adapter "${name}": cli.writeReplica is a ${typeof write}, not a function.`);

  const out = resolve(outFlag);
  const existing = await stat(out).catch(() => undefined);
  if (existing && !existing.isDirectory())
    throw new UsageError(
      `--out ${outFlag} is a file; name a folder (new or empty, or pass --force to replace one).`,
    );
  const hadFiles = existing ? (await readdir(out)).length > 0 : false;
  if (hadFiles && !force)
    throw new UsageError(
      `--out ${outFlag} already exists and is not empty; choose a new folder, or pass --force to replace it.`,
    );

  await mkdir(dirname(out), { recursive: true });
  const temp = await mkdtemp(join(dirname(out), `.${basename(out)}.replica-`));
  try {
    await write.call(adapter.cli, temp, base === undefined ? { seed } : { seed, base });
    if (ctx.signal.aborted) throw new Error("interrupted");
    const files = await listFiles(temp);
    if (!files.length) throw new Error(`adapter "${name}" wrote no files; nothing was put in ${outFlag}.`);
    await moveIntoPlace(temp, out, existing !== undefined);
    report(ctx, adapter, base === undefined ? name : `${name} --base ${base}`, out, files);
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  return 0;
}

/** The names of the installed adapters that offer `cli.writeReplica`. */
async function adaptersWithReplica(): Promise<string[]> {
  const able: string[] = [];
  for (const n of adapterNames()) {
    const a = await loadAdapter(n).catch(() => undefined);
    if (typeof a?.cli.writeReplica === "function") able.push(n);
  }
  return able;
}

/** Renames the finished `temp` to `out`, replacing an existing `out` only once the new one is complete. */
async function moveIntoPlace(temp: string, out: string, exists: boolean): Promise<void> {
  if (!exists) {
    await rename(temp, out);
    return;
  }
  if ((await readdir(out)).length === 0) {
    await rmdir(out);
    await rename(temp, out);
    return;
  }
  // --force over a non-empty folder: move the old one aside, put the new one in, then drop the old one.
  const old = await mkdtemp(join(dirname(out), `.${basename(out)}.old-`));
  await rmdir(old);
  await rename(out, old);
  try {
    await rename(temp, out);
  } catch (err) {
    await rename(old, out);
    throw err;
  }
  await rm(old, { recursive: true, force: true });
}

interface WrittenFile {
  path: string;
  bytes: number;
}

async function listFiles(root: string, dir = root): Promise<WrittenFile[]> {
  const files: WrittenFile[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(root, p)));
    else files.push({ path: relative(root, p).split(sep).join("/"), bytes: (await stat(p)).size });
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function report(
  ctx: CommandContext,
  adapter: Adapter,
  name: string,
  out: string,
  files: WrittenFile[],
): void {
  const total = files.reduce((s, f) => s + f.bytes, 0);
  const width = Math.max(...files.map((f) => f.path.length));
  ctx.out(`wrote a tiny random "${name}" checkpoint to ${out}: ${files.length} files, ${formatBytes(total)}`);
  for (const f of files) ctx.out(`  ${f.path.padEnd(width)}  ${formatBytes(f.bytes)}`);
  const model = /\s/.test(out) ? JSON.stringify(out) : out;
  ctx.out("try it (random weights, so the images are noise; this checks that everything loads and runs):");
  ctx.out(
    `  edit-r1 edit --adapter ${name} --model ${model} --image in.png --instruction "make the sky purple" --out out.png`,
  );
  ctx.out(`  edit-r1 bench --adapter ${name} --model ${model} --benchmark shapes --limit 2`);
  if (adapter.capabilities.trainable && typeof adapter.loadPolicy === "function") {
    const data = adapter.trainDefaults?.writeTrainData ? "" : " --data train.jsonl";
    ctx.out(`  edit-r1 train --adapter ${name} --model ${model}${data} --steps 1 --no-bench`);
  }
}
