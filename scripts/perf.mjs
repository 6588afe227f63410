#!/usr/bin/env node
// Runs every performance benchmark of the repository (`<package>/perf/*.mjs`), one after another so they
// do not compete for the cores. Each prints ratios against a baseline measured in the same run and writes
// JSON to .perf/. Pass a substring to run only matching scripts: `pnpm perf runtime`.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filter = process.argv[2] ?? "";
const scripts = [];
for (const group of ["packages", "adapters", "benchmarks"]) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const pkg of readdirSync(dir).sort()) {
    const perf = join(dir, pkg, "perf");
    if (!existsSync(perf)) continue;
    for (const f of readdirSync(perf).sort()) {
      if (f.endsWith(".mjs") && join(group, pkg, f).includes(filter)) scripts.push(join(perf, f));
    }
  }
}
if (scripts.length === 0) {
  console.error(`pnpm perf: no perf scripts${filter ? ` matching "${filter}"` : ""}.`);
  process.exit(1);
}
mkdirSync(join(root, ".perf"), { recursive: true });
let failed = 0;
for (const s of scripts) {
  console.log(`\n=== ${s.slice(root.length)} ===`);
  const r = spawnSync(process.execPath, ["--expose-gc", s], { stdio: "inherit", cwd: root });
  if (r.status !== 0) failed++;
}
console.log(`\n${scripts.length - failed} perf scripts ran, ${failed} failed; JSON results in .perf/`);
process.exit(failed ? 1 : 0);
