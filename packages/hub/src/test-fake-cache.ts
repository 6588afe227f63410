import { mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";

/** Commit ids of the fake repository's two snapshots. */
export const COMMIT_MAIN = "a".repeat(40);
export const COMMIT_V1 = "b".repeat(40);

/**
 * Writes a Hub cache holding `org/model` in the layout of the Python client:
 * blobs named by hash, snapshot files as relative links into blobs, refs naming commits.
 * `files` maps repository paths to contents (null: a link whose blob is missing).
 */
export async function makeFakeCache(
  cacheDir: string,
  files: Record<string, string | null>,
  options: { repo?: string; commit?: string; refs?: Record<string, string> } = {},
): Promise<string> {
  const repoDir = join(cacheDir, `models--${(options.repo ?? "org/model").replace("/", "--")}`);
  const commit = options.commit ?? COMMIT_MAIN;
  const refs = options.refs ?? { main: commit };
  for (const [name, target] of Object.entries(refs)) {
    await mkdir(dirname(join(repoDir, "refs", name)), { recursive: true });
    await writeFile(join(repoDir, "refs", name), `${target}\n`);
  }
  let n = 0;
  for (const [path, content] of Object.entries(files)) {
    const blob = join(repoDir, "blobs", `${commit.slice(0, 8)}${(n++).toString(16).padStart(8, "0")}`);
    await mkdir(dirname(blob), { recursive: true });
    if (content !== null) await writeFile(blob, content);
    const link = join(repoDir, "snapshots", commit, path);
    await mkdir(dirname(link), { recursive: true });
    await symlink(relative(dirname(link), blob), link);
  }
  return join(repoDir, "snapshots", commit);
}
