import { downloadRepo } from "@edit-r1/hub";
import { UsageError } from "../args.js";
import type { CommandContext } from "../context.js";
import { stringFlag } from "../context.js";
import { loadAdapter } from "../registry.js";

/** `edit-r1 download <repo> [--include pattern]… | --adapter <name>`: fills the Hugging Face cache. */
export async function download(ctx: CommandContext): Promise<number> {
  const adapterName = stringFlag(ctx, "adapter");
  let preset: { repo: string; include?: string[] } | undefined;
  if (adapterName) {
    const { cli } = await loadAdapter(adapterName);
    if (!cli.defaultRepo)
      throw new UsageError(
        `Adapter "${adapterName}" has nothing to download: its weights ship with the package.`,
      );
    preset = {
      repo: cli.defaultRepo,
      ...(cli.downloadPatterns ? { include: [...cli.downloadPatterns] } : {}),
    };
  }
  const repo = preset?.repo ?? ctx.positionals[0];
  if (!repo)
    throw new UsageError(
      "Name a repository (edit-r1 download org/name) or an adapter (--adapter flux-kontext).",
    );
  const include = (ctx.values.include as string[] | undefined) ?? preset?.include;
  const got = await downloadRepo(repo, {
    allowPatterns: include,
    repoType: ctx.values.dataset ? "dataset" : "model",
    env: ctx.env,
    onFile: (path, i, total) => ctx.err(`[${i + 1}/${total}] ${path}`),
  });
  ctx.out(got.snapshotDir);
  return 0;
}
