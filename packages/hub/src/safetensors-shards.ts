import { readFile, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { HubError } from "./hub-error.js";
import {
  downloadHint,
  isInside,
  type ResolveOptions,
  resolveRepoFile,
  resolveSnapshotDir,
} from "./resolve-snapshot.js";

/** The weight files of one model (component): a single file or the shards named by an index. */
export interface SafetensorsWeights {
  /** Absolute paths of the .safetensors files, sorted. */
  files: string[];
  /** Absolute path of the `*.safetensors.index.json`, when sharded. */
  index?: string;
  /** Tensor name → absolute shard path, when sharded. */
  weightMap?: Record<string, string>;
}

/** Weight file names diffusers and transformers write, single file first as both libraries prefer it. */
export const WEIGHT_FILE_NAMES = [
  "diffusion_pytorch_model.safetensors",
  "model.safetensors",
  "diffusion_pytorch_model.safetensors.index.json",
  "model.safetensors.index.json",
] as const;

/**
 * Reads a sharded index (`transformer/diffusion_pytorch_model.safetensors.index.json`) and checks
 * that every shard it names is present, naming all missing ones and how to fetch them.
 */
export async function resolveSafetensorsShards(
  repo: string,
  indexPath: string,
  options: ResolveOptions = {},
): Promise<SafetensorsWeights> {
  const index = await resolveRepoFile(repo, indexPath, options);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(index, "utf8"));
  } catch (cause) {
    throw new HubError(
      "incomplete",
      repo,
      `${index} is not valid JSON (${(cause as Error).message}). ${downloadHint(repo, indexPath)}`,
      {
        cause,
      },
    );
  }
  const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null) {
    throw new HubError(
      "incomplete",
      repo,
      `${index} has no "weight_map" object, so it is not a safetensors index.`,
    );
  }
  const folder = posix.dirname(indexPath);
  const shardOf = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || !isInside(shard)) {
      throw new HubError(
        "incomplete",
        repo,
        `${index} maps "${tensor}" to ${JSON.stringify(shard)}, which is not a file inside ${folder}.`,
      );
    }
    shardOf.set(tensor, shard);
  }
  const dir = await resolveSnapshotDir(repo, options);
  const names = [...new Set(shardOf.values())].sort();
  const missing: string[] = [];
  for (const name of names) {
    const s = await stat(join(dir, folder, name)).catch(() => undefined);
    if (!s?.isFile()) missing.push(folder === "." ? name : `${folder}/${name}`);
  }
  if (missing.length > 0) {
    throw new HubError(
      "missing-shard",
      repo,
      `${missing.length} of ${names.length} weight shards listed in ${indexPath} are missing: ${missing.join(", ")}. ${downloadHint(repo, folder === "." ? "*.safetensors" : `${folder}/*`)}`,
    );
  }
  const abs = (name: string) => join(dir, folder, name);
  return {
    files: names.map(abs),
    index,
    weightMap: Object.fromEntries([...shardOf].map(([t, s]) => [t, abs(s)])),
  };
}

/**
 * The safetensors weights in a repository folder (`subfolder`, e.g. "transformer"; "" for the
 * root): a single file if there is one, else the shards of an index.
 */
export async function resolveSafetensorsWeights(
  repo: string,
  subfolder = "",
  options: ResolveOptions = {},
): Promise<SafetensorsWeights> {
  if (subfolder !== "" && !isInside(subfolder)) {
    throw new HubError(
      "invalid-path",
      repo,
      `Subfolder "${subfolder}" must be relative and stay inside the repository.`,
    );
  }
  const dir = await resolveSnapshotDir(repo, options);
  for (const name of WEIGHT_FILE_NAMES) {
    const rel = subfolder === "" ? name : `${subfolder.replace(/\/+$/, "")}/${name}`;
    const s = await stat(join(dir, rel)).catch(() => undefined);
    if (!s?.isFile()) continue;
    if (name.endsWith(".index.json")) return resolveSafetensorsShards(repo, rel, options);
    return { files: [join(dir, rel)] };
  }
  const where = subfolder === "" ? dir : join(dir, subfolder);
  throw new HubError(
    "not-found",
    repo,
    `${where} has none of ${WEIGHT_FILE_NAMES.join(", ")}. ${downloadHint(repo, subfolder === "" ? "*.safetensors*" : `${subfolder}/*`)}`,
  );
}
