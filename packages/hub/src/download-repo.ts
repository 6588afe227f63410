import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { datasetInfo, downloadFileToCacheDir, listFiles, modelInfo, spaceInfo } from "@huggingface/hub";
import { hubCacheDir, isHubOffline, type RepoType, repoFolderName } from "./cache.js";
import { HubError } from "./hub-error.js";
import { matchesPatterns } from "./match-patterns.js";

export interface DownloadRepoOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Default "model". */
  repoType?: RepoType;
  /** Only files matching one of these (fnmatch rules, see matchesPatterns); default all files. */
  allowPatterns?: readonly string[];
  /** Skip files matching one of these. */
  ignorePatterns?: readonly string[];
  /** Default: hubCacheDir(env). */
  cacheDir?: string;
  /** Default: HF_TOKEN or HUGGING_FACE_HUB_TOKEN from env, for gated models such as FLUX.1-Kontext-dev. */
  accessToken?: string;
  /** Default process.env; HF_HUB_OFFLINE there forbids downloading. */
  env?: NodeJS.ProcessEnv;
  /** Default the Hub (https://huggingface.co). */
  hubUrl?: string;
  /** Replaces the global fetch (tests, proxies). */
  fetch?: typeof fetch;
  /** Called before each file is fetched (files already in the cache are skipped quickly). */
  onFile?: (path: string, index: number, total: number) => void;
}

export interface DownloadedRepo {
  /** The snapshot folder, as resolveSnapshotDir would find it offline afterwards. */
  snapshotDir: string;
  commit: string;
  /** The repository paths that were fetched or already present. */
  files: string[];
}

/**
 * Downloads the files of a Hub repository (or those matching `allowPatterns`) into the shared
 * Hugging Face cache, in the layout the Python client uses, so both see the same files. The
 * revision is pinned to one commit first, so every file lands in the same snapshot, and
 * `refs/<revision>` is written for later offline resolution.
 */
export async function downloadRepo(repo: string, options: DownloadRepoOptions = {}): Promise<DownloadedRepo> {
  const env = options.env ?? process.env;
  const type = options.repoType ?? "model";
  const folder = repoFolderName(repo, type);
  if (isHubOffline(env)) {
    throw new HubError(
      "offline",
      repo,
      `HF_HUB_OFFLINE is set, so ${repo} cannot be downloaded. Unset HF_HUB_OFFLINE to download it, or use the copy already in the cache (${options.cacheDir ?? hubCacheDir(env)}) or a local folder.`,
    );
  }
  const cacheDir = options.cacheDir ?? hubCacheDir(env);
  const revision = options.revision ?? "main";
  const accessToken = options.accessToken ?? env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN;
  const common = {
    ...(accessToken ? { accessToken } : {}),
    ...(options.hubUrl ? { hubUrl: options.hubUrl } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  const repoDesignation = { name: repo, type };

  const commit = await step(repo, `look up revision "${revision}"`, async () => {
    const query = { ...common, name: repo, revision, additionalFields: ["sha"] as ["sha"] };
    const info =
      type === "dataset"
        ? await datasetInfo(query)
        : type === "space"
          ? await spaceInfo(query)
          : await modelInfo(query);
    if (typeof info.sha !== "string") throw new Error("the Hub returned no commit for it");
    return info.sha;
  });
  if (revision !== commit) {
    const ref = join(cacheDir, folder, "refs", revision);
    await mkdir(dirname(ref), { recursive: true });
    await writeFile(ref, commit);
  }

  const files = await step(repo, "list its files", async () => {
    const out: string[] = [];
    for await (const entry of listFiles({
      ...common,
      repo: repoDesignation,
      recursive: true,
      revision: commit,
    })) {
      if (entry.type !== "file") continue;
      if (options.allowPatterns && !matchesPatterns(entry.path, options.allowPatterns)) continue;
      if (options.ignorePatterns && matchesPatterns(entry.path, options.ignorePatterns)) continue;
      out.push(entry.path);
    }
    return out.sort();
  });
  if (files.length === 0) {
    throw new HubError(
      "not-found",
      repo,
      `No file of ${repo}@${revision} matches ${JSON.stringify(options.allowPatterns ?? ["*"])}${options.ignorePatterns ? ` minus ${JSON.stringify(options.ignorePatterns)}` : ""}. Check the patterns against the repository's file list.`,
    );
  }
  for (const [i, path] of files.entries()) {
    options.onFile?.(path, i, files.length);
    await step(repo, `download ${path}`, () =>
      downloadFileToCacheDir({ ...common, repo: repoDesignation, path, revision: commit, cacheDir }),
    );
  }
  return { snapshotDir: join(cacheDir, folder, "snapshots", commit), commit, files };
}

async function step<T>(repo: string, what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (cause) {
    if (cause instanceof HubError) throw cause;
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new HubError(
      "download-failed",
      repo,
      `Could not ${what} for ${repo}: ${reason}. Check the network, the repository id, and for gated models (FLUX.1-Kontext-dev) accept its licence on the Hub and set HF_TOKEN.`,
      { cause },
    );
  }
}
