import { stat } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize, sep } from "node:path";
import { SafetensorsError } from "./safetensors-error.js";
import { type OpenSafetensorsOptions, SafetensorsFile } from "./safetensors-file.js";
import type { SafetensorsTensorInfo } from "./safetensors-header.js";
import { openForRead } from "./safetensors-read.js";
import { SafetensorsTensors } from "./safetensors-tensors.js";

/** An index larger than this is not an index (real ones are ~100 kB). */
const MAX_INDEX_BYTES = 100_000_000;

/**
 * The tensors of one checkpoint, stored in a single .safetensors file or sharded over several
 * with a `*.safetensors.index.json`; callers look tensors up by name without caring which.
 */
export class SafetensorsCheckpoint extends SafetensorsTensors {
  /** The path that was opened: the .safetensors file or the index. */
  readonly path: string;
  readonly files: readonly SafetensorsFile[];
  /** `__metadata__` of the single file, or of the first shard. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The index's own `metadata` object (e.g. `total_size`), when sharded. */
  readonly indexMetadata: Readonly<Record<string, unknown>> | undefined;
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;

  constructor(
    path: string,
    files: readonly SafetensorsFile[],
    tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
    indexMetadata?: Record<string, unknown>,
  ) {
    super();
    this.path = path;
    this.files = files;
    this.metadata = files[0]?.metadata ?? {};
    this.indexMetadata = indexMetadata;
    this.tensors = tensors;
  }
}

/**
 * Opens a checkpoint: a `.safetensors` file, or a `*.index.json` whose `weight_map` names the
 * shards (relative to the index's folder). Every shard's header is validated, every name in the
 * weight map must be in the shard it names, and no tensor may appear in two shards.
 */
export async function openSafetensors(
  path: string,
  options: OpenSafetensorsOptions = {},
): Promise<SafetensorsCheckpoint> {
  if (!path.endsWith(".index.json")) {
    const file = await SafetensorsFile.open(path, options);
    return new SafetensorsCheckpoint(path, [file], file.tensors);
  }
  const { weightMap, metadata } = await readIndex(path);
  const folder = dirname(path);
  const shardNames = [...new Set(Object.values(weightMap))].sort();
  const missing: string[] = [];
  for (const shard of shardNames) {
    const exists = await stat(join(folder, shard)).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!exists) missing.push(shard);
  }
  if (missing.length > 0) {
    throw new SafetensorsError(
      "missing-shard",
      path,
      `${missing.length} of ${shardNames.length} shards are missing from ${folder}: ${missing.join(", ")}.`,
    );
  }
  const files = await Promise.all(shardNames.map((s) => SafetensorsFile.open(join(folder, s), options)));
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const file of files) {
    for (const [name, info] of file.tensors) {
      const other = tensors.get(name);
      if (other !== undefined) {
        throw new SafetensorsError(
          "tensor-invalid",
          path,
          `is in two shards: ${other.path} and ${file.path}.`,
          {
            tensor: name,
          },
        );
      }
      tensors.set(name, info);
    }
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    const info = tensors.get(name);
    if (info === undefined || info.path !== join(folder, shard)) {
      throw new SafetensorsError(
        "missing-tensor",
        path,
        `the index puts this tensor in ${shard}, but that shard does not contain it${info ? ` (it is in ${info.path})` : ""}.`,
        { tensor: name, hint: "The index and its shards do not match; download them again together." },
      );
    }
  }
  return new SafetensorsCheckpoint(path, files, tensors, metadata);
}

async function readIndex(
  path: string,
): Promise<{ weightMap: Record<string, string>; metadata: Record<string, unknown> }> {
  const handle = await openForRead(path);
  let text: string;
  try {
    const { size } = await handle.stat();
    if (size > MAX_INDEX_BYTES) {
      throw new SafetensorsError(
        "header-too-large",
        path,
        `is ${size} bytes; a safetensors index is far smaller.`,
      );
    }
    text = await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new SafetensorsError("header-invalid", path, `is not valid JSON (${(cause as Error).message}).`, {
      cause,
    });
  }
  const root = parsed as { weight_map?: unknown; metadata?: unknown } | null;
  const weightMap = root?.weight_map;
  if (typeof root !== "object" || root === null || typeof weightMap !== "object" || weightMap === null) {
    throw new SafetensorsError(
      "header-invalid",
      path,
      `has no "weight_map" object; is it a safetensors index?`,
    );
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || !isInsideFolder(shard)) {
      throw new SafetensorsError(
        "header-invalid",
        path,
        `weight_map maps to ${JSON.stringify(shard)}, which is not a file name inside the index's folder.`,
        { tensor: name },
      );
    }
  }
  const metadata = typeof root.metadata === "object" && root.metadata !== null ? root.metadata : {};
  return { weightMap: weightMap as Record<string, string>, metadata: metadata as Record<string, unknown> };
}

/** Shard names come from a downloaded file; never let one point outside its folder. */
function isInsideFolder(relative: string): boolean {
  if (relative === "" || isAbsolute(relative)) return false;
  const n = normalize(relative);
  return n !== ".." && !n.startsWith(`..${sep}`) && !n.startsWith("../");
}
