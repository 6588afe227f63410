import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { checkOutputFolder, OutputFolderError, type OutputLayout } from "@edit-r1/core";
import { UsageError } from "./args.js";

/**
 * Checks the folder `--out` names before anything is written or loaded: a usage error in words ("--out x is a
 * file; choose a folder", "--out runs/a: runs/a/metrics.jsonl is a folder, …") instead of an errno later.
 */
export function checkOutFlag(dir: string, layout: OutputLayout, flag = "--out"): void {
  try {
    checkOutputFolder(dir, layout);
  } catch (err) {
    if (!(err instanceof OutputFolderError)) throw err;
    throw new UsageError(
      resolve(err.path) === resolve(dir) ? `${flag} ${err.message}.` : `${flag} ${dir}: ${err.message}.`,
    );
  }
}

/** Checks that `--out` can name a file to write: not a folder, in a folder that exists. */
export function checkOutFile(path: string, flag = "--out"): void {
  const stat = (p: string) => {
    try {
      return statSync(p);
    } catch {
      return undefined;
    }
  };
  if (stat(path)?.isDirectory())
    throw new UsageError(
      `${flag} ${path} is a folder; name the file to write, e.g. ${flag} ${path}/edited.png.`,
    );
  const parent = dirname(resolve(path));
  const info = stat(parent);
  if (!info) throw new UsageError(`${flag} ${path}: the folder ${parent} does not exist; create it first.`);
  if (!info.isDirectory()) throw new UsageError(`${flag} ${path}: ${parent} is a file, not a folder.`);
}
