// Shared helpers of the engine perf scripts: they run against dist/ (build first) and write JSON under the
// repository's .perf/ folder. Timings are medians of interleaved repetitions, to resist noisy shared CPUs.
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");

export async function loadEngine() {
  try {
    return await import(path.join(here, "../dist/index.js"));
  } catch (e) {
    throw new Error(
      `cannot load packages/engine/dist (run \`pnpm --filter @edit-r1/engine build\` first): ${e.message}`,
    );
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

/** Times `fn` (async) `n` times after `warmup` calls; returns per-call milliseconds. */
export async function timeMany(fn, n, warmup = 3) {
  for (let i = 0; i < warmup; i++) await fn();
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await fn();
    out.push(now() - t);
  }
  return out;
}

/** `xs` rotated by `k` places: rounds that alternate variants start from a different one each time. */
export function rotate(xs, k) {
  const r = k % xs.length;
  return [...xs.slice(r), ...xs.slice(0, r)];
}

/**
 * Writes `.perf/engine-<name>.json`. By convention `result.ratios` holds the figures `pnpm perf` tracks:
 * each one ours against a baseline measured in the same run, oriented so that higher is better.
 */
export function report(name, result) {
  const dir = path.join(repoRoot, ".perf");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `engine-${name}.json`);
  writeFileSync(file, `${JSON.stringify({ name, date: new Date().toISOString(), ...result }, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
  console.log(`→ ${path.relative(repoRoot, file)}`);
}
