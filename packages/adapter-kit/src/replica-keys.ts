import { readFile } from "node:fs/promises";
import { openSafetensors } from "@edit-r1/engine";
import type { WeightShapes } from "@edit-r1/models";

/**
 * Reading key lists to check a replica against a released checkpoint: the lists in reference/keys/ (a released
 * model's key names and shapes, without its weights), a checkpoint's own names and shapes, and key names with
 * the block counts taken out.
 */

/** A released checkpoint's key list: the config it was saved with, and every key's shape. */
export interface KeyList {
  config: Record<string, unknown>;
  shapes: WeightShapes;
}

/**
 * Reads a key list as reference/keys/ stores them: a first line `# <name> config={…}` (the config as JSON),
 * further `#` comment lines, then one `key<TAB>[shape]` line per tensor.
 */
export async function readKeyList(path: string): Promise<KeyList> {
  const lines = (await readFile(path, "utf8")).split("\n");
  const header = /config=(\{.*\})\s*$/.exec(lines[0] ?? "");
  if (!header) throw new Error(`${path}: the first line must be "# <name> config={…}"`);
  const config = JSON.parse(header[1]!) as Record<string, unknown>;
  const shapes: WeightShapes = new Map();
  for (const [i, line] of lines.entries()) {
    if (!line.trim() || line.startsWith("#")) continue;
    const [key, shape, extra] = line.split("\t");
    if (!key || shape === undefined || extra !== undefined) {
      throw new Error(`${path}:${i + 1}: expected "key<TAB>[shape]", got ${JSON.stringify(line)}`);
    }
    shapes.set(key, JSON.parse(shape) as number[]);
  }
  return { config, shapes };
}

/** Every tensor of a checkpoint (a .safetensors file, or an index and its shards) by name → shape. */
export async function checkpointShapes(path: string): Promise<WeightShapes> {
  const ckpt = await openSafetensors(path);
  return new Map(ckpt.names().map((n) => [n, [...ckpt.tensors.get(n)!.shape]]));
}

/**
 * Key names with every block / layer index (`.<digits>.`) replaced by `.N.`, sorted and without repeats: two
 * checkpoints with equal patterns have the same names modulo block counts.
 */
export function keyPatterns(keys: Iterable<string>): string[] {
  return [...new Set([...keys].map((k) => k.replace(/\.\d+(?=\.)/g, ".N")))].sort();
}
