import { downloadRepo } from "@edit-r1/hub";
import { UsageError } from "../args.js";
import type { CommandContext } from "../context.js";
import { stringFlag } from "../context.js";
import { checkAdapterFlags, loadAdapter } from "../registry.js";

/** `edit-r1 download <repo> [--include pattern]… | --adapter <name>`: fills the Hugging Face cache. */
export async function download(ctx: CommandContext): Promise<number> {
  const adapterName = stringFlag(ctx, "adapter");
  let presets: { repo: string; include?: string[] }[] = [];
  if (adapterName) {
    const adapter = await loadAdapter(adapterName);
    const base = stringFlag(ctx, "base");
    checkAdapterFlags(adapter, base === undefined ? {} : { base });
    const { cli } = adapter;
    if (cli.downloads) {
      presets = cli
        .downloads(base === undefined ? {} : { base })
        .map((d) => ({ repo: d.repo, ...(d.patterns ? { include: [...d.patterns] } : {}) }));
    } else if (cli.defaultRepo) {
      presets = [
        { repo: cli.defaultRepo, ...(cli.downloadPatterns ? { include: [...cli.downloadPatterns] } : {}) },
      ];
    }
    if (presets.length === 0)
      throw new UsageError(
        `Adapter "${adapterName}" has nothing to download: its weights ship with the package.`,
      );
  } else {
    const repo = ctx.positionals[0];
    if (!repo)
      throw new UsageError(
        "Name a repository (edit-r1 download org/name) or an adapter (--adapter flux-kontext).",
      );
    presets = [{ repo }];
  }
  for (const preset of presets) {
    const include = (ctx.values.include as string[] | undefined) ?? preset.include;
    const got = await downloadRepo(preset.repo, {
      allowPatterns: include,
      repoType: ctx.values.dataset ? "dataset" : "model",
      env: ctx.env,
      onFile: (path, i, total) => ctx.err(`[${i + 1}/${total}] ${preset.repo}: ${path}`),
    });
    ctx.out(got.snapshotDir);
  }
  return 0;
}
