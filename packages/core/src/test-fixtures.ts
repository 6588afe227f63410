// Test helper (excluded from the build): finds the reference fixtures for tests.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** EDIT_R1_FIXTURES, or the first `fixtures/` folder found walking up from this file. */
export function fixturesRoot(): string {
  const fromEnv = process.env.EDIT_R1_FIXTURES;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`EDIT_R1_FIXTURES names ${fromEnv}, which does not exist`);
    return resolve(fromEnv);
  }
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "fixtures");
    if (existsSync(candidate) && statSync(candidate).isDirectory()) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("no fixtures/ folder above the test file; set EDIT_R1_FIXTURES");
    dir = parent;
  }
}

/** Every algorithms.json under the fixtures root, parsed. */
export function algorithmFixtureFiles(): { path: string; data: Record<string, unknown[]> }[] {
  const out: { path: string; data: Record<string, unknown[]> }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name === "algorithms.json")
        out.push({ path: p, data: JSON.parse(readFileSync(p, "utf8")) });
    }
  };
  walk(fixturesRoot());
  return out;
}

/** Largest |a − b| / (|b| + floor) over two arrays of equal length. */
export function maxRelativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++)
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) + floor));
  return worst;
}
