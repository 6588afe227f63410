import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { FixtureError } from "./fixture-error.js";

const isDirectory = (path: string): boolean => existsSync(path) && statSync(path).isDirectory();

/**
 * The repository's root: the nearest folder above this package that holds `pnpm-workspace.yaml`.
 * Found from this module's own location, so it does not depend on the working directory.
 */
export function repositoryRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "pnpm-workspace.yaml"))) return dir;
    const up = dirname(dir);
    if (up === dir) {
      throw new FixtureError(
        `no pnpm-workspace.yaml above ${fileURLToPath(import.meta.url)}: @edit-r1/test-fixtures only works ` +
          "inside the edit-r1 repository (set EDIT_R1_FIXTURES to name a fixtures folder)",
      );
    }
    dir = up;
  }
}

/**
 * The fixtures folder tests read: the folder named by `EDIT_R1_FIXTURES` (a relative path is taken from the
 * repository root, so every package's tests agree), else the repository's `fixtures/`.
 * Throws a FixtureError when the folder named does not exist.
 */
export function fixturesRoot(): string {
  const fromEnv = process.env.EDIT_R1_FIXTURES;
  if (fromEnv) {
    const path = resolve(repositoryRoot(), fromEnv);
    if (!isDirectory(path)) {
      throw new FixtureError(
        `EDIT_R1_FIXTURES names ${fromEnv}${path === fromEnv ? "" : ` (${path})`}, which is not a folder: ` +
          "point it at a folder laid out like the repository's fixtures/ (see fixtures/README.md), or unset it",
      );
    }
    return path;
  }
  const path = join(repositoryRoot(), "fixtures");
  if (!isDirectory(path)) {
    throw new FixtureError(`the repository has no fixtures/ folder at ${path}; set EDIT_R1_FIXTURES`);
  }
  return path;
}

/**
 * The shared reference data that sits beside the repository (`../shared/reference/data` from its root):
 * published benchmark files too large or licensed too differently to copy in. May not exist; tests that
 * need it skip, saying so, when it is absent.
 */
export function sharedReferenceDataDir(): string {
  return resolve(repositoryRoot(), "..", "shared", "reference", "data");
}
