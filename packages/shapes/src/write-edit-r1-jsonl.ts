import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodePng } from "./encode-png.js";
import { InvalidOptionsError } from "./errors.js";
import type { ShapesEdit } from "./generate-edits.js";

export interface WriteEditR1JsonlOptions {
  /** JSONL file name inside `dir` (default `<split of the first edit>_metadata.jsonl`, as Edit-R1 names them). */
  fileName?: string;
  /** Folder for the PNGs, relative to `dir` (default `images`). */
  imagesDir?: string;
  /** Also write each exact target as `<key>.target.png` beside the source (default false). */
  writeTargets?: boolean;
}

export interface WrittenEditR1Jsonl {
  jsonlPath: string;
  /** Paths of the source PNGs (`dir` joined with the relative path), in line order. */
  imagePaths: string[];
  count: number;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Writes edits as an Edit-R1 data set: one `{"prompt", "image", "requirement"}` line per edit,
 * with `image` a PNG path relative to the JSONL file. The requirement keeps the `[shapes:v1:…]`
 * tag, so the exact target travels with the data. Images are written before the JSONL, so a
 * JSONL on disk never names a missing image.
 */
export async function writeEditR1Jsonl(
  dir: string,
  edits: readonly ShapesEdit[],
  options: WriteEditR1JsonlOptions = {},
): Promise<WrittenEditR1Jsonl> {
  const imagesDir = options.imagesDir ?? "images";
  const fileName = options.fileName ?? `${edits[0]?.split ?? "train"}_metadata.jsonl`;
  if (!SAFE_NAME.test(fileName)) {
    throw new InvalidOptionsError(
      `writeEditR1Jsonl: fileName must be a plain file name, got ${JSON.stringify(fileName)}.`,
    );
  }
  if (imagesDir.split("/").some((part) => !SAFE_NAME.test(part))) {
    throw new InvalidOptionsError(
      `writeEditR1Jsonl: imagesDir must be a relative folder without "..", got ${JSON.stringify(imagesDir)}.`,
    );
  }
  const keys = new Set<string>();
  for (const e of edits) {
    if (!SAFE_NAME.test(e.key) || keys.has(e.key)) {
      throw new InvalidOptionsError(
        `writeEditR1Jsonl: edit key ${JSON.stringify(e.key)} is not a unique plain file name; keys name the image files.`,
      );
    }
    keys.add(e.key);
  }
  await mkdir(join(dir, imagesDir), { recursive: true });
  const lines: string[] = [];
  const imagePaths: string[] = [];
  for (const e of edits) {
    const relative = `${imagesDir}/${e.key}.png`;
    const path = join(dir, relative);
    await writeFile(path, encodePng(e.source));
    if (options.writeTargets)
      await writeFile(join(dir, imagesDir, `${e.key}.target.png`), encodePng(e.target));
    imagePaths.push(path);
    lines.push(JSON.stringify({ prompt: e.instruction, image: relative, requirement: e.requirement }));
  }
  const jsonlPath = join(dir, fileName);
  await writeFile(jsonlPath, lines.length > 0 ? `${lines.join("\n")}\n` : "");
  return { jsonlPath, imagePaths, count: edits.length };
}
