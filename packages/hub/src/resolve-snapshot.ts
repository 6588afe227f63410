import { lstat, readdir, readFile, stat } from "node:fs/promises";
import { isAbsolute, join, normalize, resolve, sep } from "node:path";
import { hubCacheDir, type RepoType, repoFolderName } from "./cache.js";
import { HubError } from "./hub-error.js";

export interface ResolveOptions {
  /** Branch, tag or 40-hex commit (default "main"). Ignored for local folders. */
  revision?: string;
  /** Default "model". */
  repoType?: RepoType;
  /** The Hub cache to look in (default: from HF_HUB_CACHE / HF_HOME, see hubCacheDir). */
  cacheDir?: string;
  /** Where to read HF_* variables from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

const COMMIT = /^[0-9a-f]{40}$/;

/** The command that fetches what is missing, quoted in error messages. */
export function downloadHint(repo: string, include?: string): string {
  return `Run \`edit-r1 download ${repo}${include === undefined ? "" : ` --include '${include}'`}\` (needs network), set HF_HUB_CACHE to a cache that has it, or pass a local folder instead.`;
}

/**
 * The folder holding a model's files: `repo` itself when it is an existing local folder (like
 * diffusers' `from_pretrained`), else the Hub cache snapshot of `repo` at `revision`, found through
 * `refs/<revision>` without any network access.
 */
export async function resolveSnapshotDir(repo: string, options: ResolveOptions = {}): Promise<string> {
  const local = await stat(repo).catch(() => undefined);
  if (local?.isDirectory()) return resolve(repo);
  if (looksLikePath(repo)) {
    throw new HubError("not-found", repo, `Local folder ${repo} does not exist (or is not a folder).`);
  }
  const type = options.repoType ?? "model";
  const cacheDir = options.cacheDir ?? hubCacheDir(options.env);
  const repoDir = join(cacheDir, repoFolderName(repo, type));
  const revision = options.revision ?? "main";
  if (!(await isDir(repoDir))) {
    throw new HubError(
      "not-cached",
      repo,
      `${describe(repo, type)} is not in the Hub cache at ${cacheDir}. ${downloadHint(repo)}`,
    );
  }
  let commit = revision;
  if (!COMMIT.test(revision)) {
    if (!isInside(revision)) {
      throw new HubError("invalid-path", repo, `Revision "${revision}" is not a branch, tag or commit name.`);
    }
    const ref = await readFile(join(repoDir, "refs", revision), "utf8").catch(() => undefined);
    if (ref === undefined) {
      throw new HubError(
        "not-cached",
        repo,
        `${describe(repo, type)} is cached at ${repoDir}, but not at revision "${revision}" (cached refs: ${await listNames(join(repoDir, "refs"))}). ${downloadHint(repo)}`,
      );
    }
    commit = ref.trim();
  }
  const snapshot = join(repoDir, "snapshots", commit);
  if (!(await isDir(snapshot))) {
    throw new HubError(
      "not-cached",
      repo,
      `${describe(repo, type)} has no snapshot for commit ${commit} (revision "${revision}") in ${repoDir} (snapshots: ${await listNames(join(repoDir, "snapshots"))}). ${downloadHint(repo)}`,
    );
  }
  return snapshot;
}

/**
 * The local path of one file of a repository (e.g. `transformer/config.json`), from a local folder
 * or the cache snapshot. Throws a HubError that says how to fetch it when it is absent, and
 * separately when the cache has a link whose blob is gone (an interrupted download).
 */
export async function resolveRepoFile(
  repo: string,
  path: string,
  options: ResolveOptions = {},
): Promise<string> {
  if (!isInside(path)) {
    throw new HubError(
      "invalid-path",
      repo,
      `File path "${path}" must be relative and stay inside the repository.`,
    );
  }
  const dir = await resolveSnapshotDir(repo, options);
  const full = join(dir, path);
  const link = await lstat(full).catch(() => undefined);
  if (link === undefined) {
    throw new HubError(
      "not-found",
      repo,
      `${repo} has no file ${path} (looked in ${dir}). ${downloadHint(repo, path)}`,
    );
  }
  const target = await stat(full).catch(() => undefined);
  if (target === undefined) {
    throw new HubError(
      "incomplete",
      repo,
      `${full} is a link to a file that is not there: the download of ${path} was interrupted. ${downloadHint(repo, path)}`,
    );
  }
  if (!target.isFile()) throw new HubError("not-found", repo, `${full} is not a file.`);
  return full;
}

/**
 * Every file of a snapshot or local folder, as sorted forward-slash paths relative to it
 * (`transformer/config.json`). Links are followed; dangling ones (interrupted downloads) and the
 * `.git` and `.cache` folders of local checkouts are left out.
 */
export async function listSnapshotFiles(repo: string, options: ResolveOptions = {}): Promise<string[]> {
  const root = await resolveSnapshotDir(repo, options);
  const out: string[] = [];
  await walk(root, "", out);
  return out.sort();
}

async function walk(dir: string, prefix: string, out: string[]): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    const s = await stat(full).catch(() => undefined);
    if (s === undefined) continue;
    if (s.isDirectory()) {
      if (entry.name === ".git" || entry.name === ".cache") continue;
      await walk(full, rel, out);
    } else if (s.isFile()) {
      out.push(rel);
    }
  }
}

/** A relative path that does not climb out of its folder. */
export function isInside(relative: string): boolean {
  if (relative === "" || isAbsolute(relative) || relative.includes("\\")) return false;
  const n = normalize(relative);
  return n !== ".." && !n.startsWith(`..${sep}`) && !n.startsWith("../");
}

function looksLikePath(repo: string): boolean {
  return isAbsolute(repo) || /^\.{1,2}([/\\]|$)/.test(repo) || repo.startsWith("~") || repo.includes("\\");
}

function describe(repo: string, type: string): string {
  return `${type === "model" ? "Model" : type === "dataset" ? "Dataset" : "Space"} ${repo}`;
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function listNames(dir: string): Promise<string> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.length === 0 ? "none" : names.slice(0, 8).join(", ");
}
