/**
 * Loads the ImgEdit-Bench Basic suite: `basic_edit.json` (key → { id: image path, prompt, edit_type })
 * and the folder its image paths are relative to, from a local folder or a Hugging Face dataset cache
 * snapshot. Entries that cannot be run (unknown edit type, missing fields) are kept with a `problem`, so
 * the run reports them per key instead of losing them.
 */
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { EditR1Error } from "@edit-r1/core";
import { DataFileError, HubError, type ResolveOptions, resolveSnapshotDir } from "@edit-r1/hub";
import { type ImgEditCategory, isImgEditCategory } from "./imgedit-rubrics.js";

/** Where the benchmark's files are looked for, in order, when no `editJson` is given. */
export const IMGEDIT_JSON_CANDIDATES = [
  "basic_edit.json",
  "Benchmark/Basic/basic_edit.json",
  "singleturn/singleturn.json",
  "Benchmark/singleturn/singleturn.json",
] as const;

export interface ImgEditItem {
  /** The string-integer key of basic_edit.json; the output is `<key>.png`. */
  key: string;
  /** The edit type as written in the file (may be unknown; then `problem` says so). */
  category: string;
  instruction: string;
  /** Absolute path of the source image. */
  imagePath: string;
  /** The image path as written in the file (`id`). */
  imageId: string;
  /** Why this entry cannot be run; the run reports it as a failed item. */
  problem?: string;
}

export interface ImgEditData {
  items: ImgEditItem[];
  /** The JSON file read. */
  jsonPath: string;
  /** SHA-256 of the JSON file's bytes: which version of the benchmark was run (it changed in June 2025). */
  jsonSha256: string;
  imageRoot: string;
}

export interface LoadImgEditOptions {
  /**
   * A local folder or a Hugging Face dataset repository id (looked up in the Hub cache, offline).
   * Default "sysuyy/ImgEdit".
   */
  data?: string;
  /** The benchmark JSON, relative to the data folder or absolute. Default: the first of IMGEDIT_JSON_CANDIDATES found. */
  editJson?: string;
  /** The folder the entries' `id` paths are relative to. Default: the folder holding the JSON. */
  imageRoot?: string;
  /** Hub cache settings (cacheDir, env, revision). */
  hub?: Omit<ResolveOptions, "repoType">;
}

/** The benchmark data cannot be used at all (no JSON, not an object); the message says what to do. */
export class ImgEditDataError extends EditR1Error {
  override readonly name = "ImgEditDataError";
}

export const DEFAULT_IMGEDIT_DATA = "sysuyy/ImgEdit";

export async function loadImgEditBasic(options: LoadImgEditOptions = {}): Promise<ImgEditData> {
  const data = options.data ?? DEFAULT_IMGEDIT_DATA;
  let root: string;
  try {
    root = await resolveSnapshotDir(data, { ...options.hub, repoType: "dataset" });
  } catch (err) {
    if (!(err instanceof HubError)) throw err;
    throw new ImgEditDataError(
      `ImgEdit-Bench data "${data}" not found: ${err.message} Give a folder holding basic_edit.json and the benchmark images (extracted from Benchmark.tar of the sysuyy/ImgEdit dataset).`,
      { cause: err },
    );
  }
  const jsonPath = await findJson(root, options.editJson);
  const bytes = await readFile(jsonPath);
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8").replace(/^\uFEFF/, ""));
  } catch (cause) {
    throw new DataFileError(
      jsonPath,
      `invalid JSON (${(cause as Error).message}); re-download basic_edit.json.`,
      {
        cause,
      },
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new DataFileError(
      jsonPath,
      'must be an object keyed by sample id ({ "22": { id, prompt, edit_type }, … }); is this basic_edit.json?',
    );
  }
  const imageRoot = options.imageRoot ? resolve(root, options.imageRoot) : dirname(jsonPath);
  const items = Object.entries(parsed as Record<string, unknown>).map(([key, entry]) =>
    itemOf(key, entry, imageRoot),
  );
  if (items.length === 0) throw new DataFileError(jsonPath, "has no entries.");
  return {
    items,
    jsonPath,
    jsonSha256: createHash("sha256").update(bytes).digest("hex"),
    imageRoot,
  };
}

async function findJson(root: string, editJson: string | undefined): Promise<string> {
  if (editJson !== undefined) {
    const path = isAbsolute(editJson) ? editJson : join(root, editJson);
    if (!(await isFile(path))) {
      throw new ImgEditDataError(`ImgEdit-Bench JSON ${path} does not exist; check the editJson setting.`);
    }
    return path;
  }
  for (const candidate of IMGEDIT_JSON_CANDIDATES) {
    const path = join(root, candidate);
    if (await isFile(path)) return path;
  }
  const tar = (await isFile(join(root, "Benchmark.tar")))
    ? ` ${root} holds Benchmark.tar: extract it (tar xf Benchmark.tar) into a folder, put basic_edit.json (from the ImgEdit GitHub repository, Benchmark/Basic) next to the images, and pass that folder.`
    : "";
  throw new ImgEditDataError(
    `no ImgEdit-Bench JSON in ${root} (looked for ${IMGEDIT_JSON_CANDIDATES.join(", ")}).${tar} Or pass editJson explicitly.`,
  );
}

function itemOf(key: string, entry: unknown, imageRoot: string): ImgEditItem {
  const e = (entry !== null && typeof entry === "object" ? entry : {}) as Record<string, unknown>;
  const imageId = typeof e.id === "string" ? e.id : "";
  const instruction = typeof e.prompt === "string" ? e.prompt : "";
  const category = typeof e.edit_type === "string" ? e.edit_type : String(e.edit_type ?? "");
  const item: ImgEditItem = {
    key,
    category,
    instruction,
    imageId,
    imagePath: imageId ? resolve(imageRoot, imageId) : "",
  };
  if (!imageId || !instruction) {
    item.problem = `entry "${key}" lacks ${!imageId ? '"id" (the image path)' : '"prompt"'}; fix or remove it in the benchmark JSON`;
  } else if (!isImgEditCategory(category)) {
    item.problem =
      category === "alter"
        ? `entry "${key}" has edit_type "alter", the name used before the June 2025 revision (now "adjust", with 57 prompts rewritten); use the current basic_edit.json`
        : `entry "${key}" has unknown edit_type "${category}"; the Basic suite has add, adjust, extract, replace, remove, background, style, compose, action`;
  }
  return item;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

/** Narrows an item's category once `problem` is known to be absent. */
export function categoryOf(item: ImgEditItem): ImgEditCategory | undefined {
  return isImgEditCategory(item.category) ? item.category : undefined;
}
