import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { FixtureError } from "./fixture-error.js";
import { ALGORITHM_KEYS, type AlgorithmKey, isAlgorithmKey, REGISTRY_FILE } from "./fixture-registry.js";
import { readJsonFile } from "./fixtures-of-kind.js";
import { fixturesRoot } from "./fixtures-root.js";

/** One parsed algorithms.json: lists of cases by key. */
export interface AlgorithmFixtureFile {
  /** Absolute path. */
  path: string;
  /** Path from the fixtures root, for test names. */
  name: string;
  data: Record<string, unknown[]>;
}

/** Every algorithms.json at any depth under `root` (default `fixturesRoot()`), parsed, in path order. */
export function algorithmFixtureFiles(root: string = fixturesRoot()): AlgorithmFixtureFile[] {
  const paths: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name === "algorithms.json") paths.push(p);
    }
  };
  walk(root);
  return paths.sort().map((path) => {
    const data = readJsonFile(path);
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      throw new FixtureError(`${path} must hold an object of case lists by key (see fixtures/README.md)`);
    }
    return { path, name: relative(root, path), data: data as Record<string, unknown[]> };
  });
}

/**
 * Every case of one algorithms.json key across `files`, labelled `<file>: <key>[i]`. Throws a FixtureError
 * for a key not registered in ALGORITHM_KEYS.
 */
export function algorithmCases(
  key: AlgorithmKey,
  files: AlgorithmFixtureFile[] = algorithmFixtureFiles(),
): { label: string; case: unknown }[] {
  if (!isAlgorithmKey(key)) {
    throw new FixtureError(
      `algorithms.json key "${key}" is not registered: add it to ALGORITHM_KEYS in ${REGISTRY_FILE} ` +
        `(known keys: ${Object.keys(ALGORITHM_KEYS).join(", ")})`,
    );
  }
  const out: { label: string; case: unknown }[] = [];
  for (const file of files) {
    const cases = file.data[key];
    if (!Array.isArray(cases)) continue;
    cases.forEach((c, i) => {
      out.push({ label: `${file.name}: ${key}[${i}]`, case: c });
    });
  }
  return out;
}
