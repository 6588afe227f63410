import { homedir } from "node:os";
import { join } from "node:path";
import { HubError } from "./hub-error.js";

export type RepoType = "model" | "dataset" | "space";

/** The folder name the Hugging Face cache uses for a repository: `models--org--name`. */
export function repoFolderName(repoId: string, type: RepoType = "model"): string {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoId)) {
    throw new HubError(
      "invalid-repo",
      repoId,
      `Invalid Hub repository id "${repoId}": expected "org/name" (letters, digits, '.', '_', '-') or an existing local folder.`,
    );
  }
  return `${type}s--${repoId.replaceAll("/", "--")}`;
}

/** The Hub cache folder, honouring HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE and HF_HOME like the Python client. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

/** Offline unless the user opts in: tests and CI never reach the network. */
export function isHubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.HF_HUB_OFFLINE ?? "").toLowerCase();
  return v === "1" || v === "true" || v === "yes" || v === "on";
}
