import { downloadRepo } from "@edit-r1/hub";
import { UsageError } from "../args.js";
import type { CommandContext } from "../context.js";
import { stringFlag } from "../context.js";

/** The files each adapter needs, so a download does not fetch whole repositories. */
const ADAPTER_REPOS: Record<string, { repo: string; include: string[] }> = {
  "flux-kontext": {
    repo: "black-forest-labs/FLUX.1-Kontext-dev",
    include: [
      "model_index.json",
      "transformer/*",
      "vae/*",
      "text_encoder/*",
      "text_encoder_2/*",
      "tokenizer/*",
      "tokenizer_2/*",
      "scheduler/*",
    ],
  },
};

/** `edit-r1 download <repo> [--include pattern]… | --adapter <name>`: fills the Hugging Face cache. */
export async function download(ctx: CommandContext): Promise<number> {
  const adapter = stringFlag(ctx, "adapter");
  const preset = adapter ? ADAPTER_REPOS[adapter] : undefined;
  if (adapter && !preset) {
    throw new UsageError(
      `No download preset for adapter "${adapter}" (presets: ${Object.keys(ADAPTER_REPOS).join(", ")}); name a repo instead.`,
    );
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
