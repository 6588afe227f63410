#!/usr/bin/env node
// Runs every performance benchmark of the repository (`<package>/perf/*.mjs`), one after another so they
// do not compete for the cores. Each prints ratios against a baseline measured in the same run and writes
// JSON to .perf/. Pass a substring to run only matching scripts: `pnpm perf runtime`.
//
// History: the results of each run are appended to .perf/history/<cpu model>-<cores>c.json, one file per
// machine, since figures from different machines do not compare. A script's tracked figures are the
// `ratios` object of the JSON it writes (ours against a same-run baseline, higher is better); a ratio more
// than 15 % below its value in the last run on this machine that measured it prints a WARNING line
// (with --fail-on-regression the exit status is then 1). Results without `ratios` are kept in the
// history but not compared.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import { join } from "node:path";

const REGRESSION = 0.15;
const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const failOnRegression = args.includes("--fail-on-regression");
const filter = args.find((a) => !a.startsWith("--")) ?? "";
const scripts = [];
for (const group of ["packages", "adapters", "benchmarks"]) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const pkg of readdirSync(dir).sort()) {
    const perf = join(dir, pkg, "perf");
    if (!existsSync(perf)) continue;
    for (const f of readdirSync(perf).sort()) {
      // perf-util.mjs and the like are helpers, not benchmarks.
      if (f.endsWith(".mjs") && !f.endsWith("-util.mjs") && join(group, pkg, f).includes(filter)) {
        scripts.push(join(perf, f));
      }
    }
  }
}
if (scripts.length === 0) {
  console.error(`pnpm perf: no perf scripts${filter ? ` matching "${filter}"` : ""}.`);
  process.exit(1);
}
const out = join(root, ".perf");
mkdirSync(out, { recursive: true });

/** The JSON results a script wrote: files directly in .perf/ modified since it started. */
function resultsSince(startMs) {
  const found = {};
  for (const f of readdirSync(out)) {
    if (!f.endsWith(".json")) continue;
    const file = join(out, f);
    if (statSync(file).mtimeMs < startMs) continue;
    try {
      found[f.slice(0, -".json".length)] = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      // A file another process is writing; not this run's.
    }
  }
  return found;
}

let failed = 0;
const results = {};
for (const s of scripts) {
  console.log(`\n=== ${s.slice(root.length)} ===`);
  const start = Date.now() - 1000; // mtime granularity
  const r = spawnSync(process.execPath, ["--expose-gc", s], { stdio: "inherit", cwd: root });
  if (r.status !== 0) failed++;
  Object.assign(results, resultsSince(start));
}

// ---- history and regressions, per machine ----
const cpus = os.cpus();
const cpu = (cpus[0]?.model ?? "unknown cpu").replace(/\s+/g, " ").trim();
const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : cpus.length;
const machineKey = `${cpu}-${cores}c`.replace(/[^A-Za-z0-9.]+/g, "-").replace(/^-|-$/g, "");
const historyDir = join(out, "history");
const historyFile = join(historyDir, `${machineKey}.json`);
mkdirSync(historyDir, { recursive: true });
let history = { machine: { cpu, cores, platform: `${process.platform}-${process.arch}` }, runs: [] };
if (existsSync(historyFile)) {
  try {
    history = JSON.parse(readFileSync(historyFile, "utf8"));
  } catch (e) {
    console.log(`WARNING: ${historyFile} is not valid JSON (${e.message}); starting a new history.`);
  }
}

function lastValue(name, key) {
  for (let i = history.runs.length - 1; i >= 0; i--) {
    const v = history.runs[i].results?.[name]?.ratios?.[key];
    if (typeof v === "number" && Number.isFinite(v)) return { value: v, date: history.runs[i].date };
  }
  return undefined;
}

const regressions = [];
const rows = [];
for (const [name, result] of Object.entries(results).sort()) {
  const ratios = result?.ratios;
  if (!ratios || typeof ratios !== "object") {
    rows.push(`  ${name}: no ratios (kept in the history, not compared)`);
    continue;
  }
  for (const [key, value] of Object.entries(ratios)) {
    if (typeof value !== "number") continue;
    const last = lastValue(name, key);
    const change = last ? value / last.value - 1 : undefined;
    const was = last
      ? ` (last ${last.value}, ${change >= 0 ? "+" : ""}${(change * 100).toFixed(1)} %)`
      : " (first run)";
    rows.push(`  ${name}.${key} = ${value}${was}`);
    if (last && value < last.value * (1 - REGRESSION)) {
      regressions.push(
        `WARNING: perf regression: ${name}.${key} = ${value}, ${(-change * 100).toFixed(1)} % below ${last.value} ` +
          `from the last run on this machine (${last.date}); more than ${REGRESSION * 100} %.`,
      );
    }
  }
}

let commit = "unknown";
try {
  commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
  const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
    cwd: root,
    encoding: "utf8",
  });
  if (dirty.trim()) commit += "+dirty";
} catch {
  // Not a git checkout.
}
history.runs.push({
  date: new Date().toISOString(),
  commit,
  node: process.version,
  filter,
  load_average: os.loadavg().map((v) => Number(v.toFixed(2))),
  results,
});
writeFileSync(historyFile, `${JSON.stringify(history, null, 1)}\n`);

console.log(`\nRatios (ours / same-run baseline, higher is better) on ${cpu}, ${cores} cores:`);
for (const r of rows) console.log(r);
console.log(`History: ${historyFile.slice(root.length)} (${history.runs.length} runs)`);
if (os.loadavg()[0] > cores * 0.75) {
  console.log(`Note: load average ${os.loadavg()[0].toFixed(2)} on ${cores} cores; figures are noisy.`);
}
for (const w of regressions) console.log(w);
console.log(`\n${scripts.length - failed} perf scripts ran, ${failed} failed; JSON results in .perf/`);
process.exit(failed || (regressions.length && failOnRegression) ? 1 : 0);
