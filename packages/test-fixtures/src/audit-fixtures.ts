import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { type AlgorithmFixtureFile, algorithmFixtureFiles } from "./algorithm-fixture-files.js";
import {
  ALGORITHM_KEYS,
  isAlgorithmKey,
  isModelFixtureKind,
  MODEL_FIXTURE_KINDS,
  NON_FIXTURE_ENTRIES,
  REGISTRY_FILE,
} from "./fixture-registry.js";
import { readJsonFile } from "./fixtures-of-kind.js";

/** Files a model fixture folder must hold besides meta.json. */
const MODEL_FIXTURE_FILES = ["weights.safetensors", "io.safetensors"] as const;

/**
 * Checks a fixtures folder against the registry of what the tests claim, and returns one sentence per
 * problem (empty when every entry is checked by some test and every registered kind and key has a case):
 *
 * - a top-level entry that is neither a model fixture (a folder with meta.json), nor a folder holding an
 *   algorithms.json, nor listed in NON_FIXTURE_ENTRIES;
 * - a meta.json that does not parse, has no string `kind`, or names a kind not in MODEL_FIXTURE_KINDS
 *   (with the nearest registered kind when it looks like a misspelling);
 * - a model fixture folder without weights.safetensors or io.safetensors;
 * - an algorithms.json that does not parse, or a key in it not in ALGORITHM_KEYS, or whose value is not a list;
 * - with `complete` (the default, for the repository's own fixtures/): a registered kind (not `heldOutOnly`) or
 *   key with zero cases under `root`, which would leave its tests checking nothing. A held-out folder
 *   (EDIT_R1_FIXTURES) may hold any subset of the kinds: tests fall back to fixtures/ for the rest.
 */
export function auditFixtures(root: string, options: { complete?: boolean } = {}): string[] {
  const complete = options.complete ?? true;
  if (!existsSync(root) || !statSync(root).isDirectory()) return [`${root} is not a folder`];
  const problems: string[] = [];
  const kindCount = new Map<string, number>();
  const keyCount = new Map<string, number>();
  const hasAlgorithms = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((e) =>
      e.isDirectory() ? hasAlgorithms(join(dir, e.name)) : e.name === "algorithms.json",
    );

  for (const entry of readdirSync(root, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const name = entry.name;
    if (name.startsWith(".") || Object.hasOwn(NON_FIXTURE_ENTRIES, name)) continue;
    const dir = join(root, name);
    if (!entry.isDirectory()) {
      problems.push(
        `${name}: a file no test reads; remove it, or list it in NON_FIXTURE_ENTRIES in ${REGISTRY_FILE}`,
      );
      continue;
    }
    const metaPath = join(dir, "meta.json");
    if (!existsSync(metaPath)) {
      if (hasAlgorithms(dir)) continue;
      problems.push(
        `${name}/: a folder with no meta.json and no algorithms.json, so no test checks it; give it a ` +
          `meta.json with a registered kind, or list it in NON_FIXTURE_ENTRIES in ${REGISTRY_FILE}`,
      );
      continue;
    }
    let meta: unknown;
    try {
      meta = readJsonFile(metaPath);
    } catch (e) {
      problems.push(`${name}/meta.json: ${(e as Error).message}`);
      continue;
    }
    const kind = (meta as { kind?: unknown } | null)?.kind;
    if (typeof kind !== "string") {
      problems.push(`${name}/meta.json has no string "kind", so no test checks the folder; add one`);
      continue;
    }
    if (!isModelFixtureKind(kind)) {
      const near = nearest(kind, Object.keys(MODEL_FIXTURE_KINDS));
      problems.push(
        `${name}/meta.json has kind "${kind}", which no test claims` +
          (near ? ` (did you mean "${near}"?)` : "") +
          `; fix the kind, or register it in MODEL_FIXTURE_KINDS in ${REGISTRY_FILE} together with a ` +
          `test that checks it (registered: ${Object.keys(MODEL_FIXTURE_KINDS).join(", ")})`,
      );
      continue;
    }
    kindCount.set(kind, (kindCount.get(kind) ?? 0) + 1);
    for (const file of MODEL_FIXTURE_FILES) {
      if (!existsSync(join(dir, file))) {
        problems.push(`${name}/ (kind "${kind}") has no ${file}; see fixtures/README.md for the layout`);
      }
    }
  }

  let files: AlgorithmFixtureFile[] = [];
  try {
    files = algorithmFixtureFiles(root);
  } catch (e) {
    problems.push((e as Error).message);
  }
  for (const file of files) {
    const name = relative(root, file.path);
    for (const [key, cases] of Object.entries(file.data)) {
      if (!isAlgorithmKey(key)) {
        const near = nearest(key, Object.keys(ALGORITHM_KEYS));
        problems.push(
          `${name}: key "${key}" is claimed by no test` +
            (near ? ` (did you mean "${near}"?)` : "") +
            `; add a handler in ${ALGORITHM_KEYS.schedules.tests[0]} and register the key in ` +
            `ALGORITHM_KEYS in ${REGISTRY_FILE}, or remove it`,
        );
        continue;
      }
      if (!Array.isArray(cases)) {
        problems.push(`${name}: key "${key}" must hold a list of cases`);
        continue;
      }
      keyCount.set(key, (keyCount.get(key) ?? 0) + cases.length);
    }
  }

  if (!complete) return problems;
  for (const [kind, claim] of Object.entries(MODEL_FIXTURE_KINDS)) {
    if (!kindCount.get(kind) && !("heldOutOnly" in claim)) {
      problems.push(
        `no fixture of kind "${kind}" under ${root}, so ${claim.tests.join(" and ")} would check nothing; ` +
          `add one, or unregister the kind in ${REGISTRY_FILE} together with its tests`,
      );
    }
  }
  for (const [key, claim] of Object.entries(ALGORITHM_KEYS)) {
    if (!keyCount.get(key)) {
      problems.push(
        `no "${key}" case in any algorithms.json under ${root}, so ${claim.tests.join(" and ")} would ` +
          `check none; add cases, or unregister the key in ${REGISTRY_FILE} together with its handler`,
      );
    }
  }
  return problems;
}

/** The candidate within edit distance 3 (and less than half the name) of `name`, if any. */
function nearest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.floor(name.length / 2));
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c);
    if (d <= bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
