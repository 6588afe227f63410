#!/usr/bin/env node
// Release check: publint on every publishable package, then `pnpm pack` each one and install all the
// tarballs together into an empty project (workspace:^ ranges become real versions in the tarballs).
// Needs the npm registry for third-party dependencies, so it is a release step, not part of `pnpm test`.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "inherit"] }).toString();
const dirs = [];
for (const group of ["packages", "adapters", "benchmarks"]) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const p of readdirSync(dir)) {
    const pj = join(dir, p, "package.json");
    if (existsSync(pj) && !JSON.parse(readFileSync(pj, "utf8")).private) dirs.push(join(dir, p));
  }
}
const packs = mkdtempSync(join(tmpdir(), "edit-r1-packs-"));
for (const d of dirs) {
  process.stdout.write(`publint ${d.slice(root.length)}: `);
  run("npx", ["publint", "--strict"], d);
  console.log("ok");
  run("pnpm", ["pack", "--pack-destination", packs], d);
}
const app = mkdtempSync(join(tmpdir(), "edit-r1-consumer-"));
writeFileSync(join(app, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
const tarballs = readdirSync(packs).map((f) => join(packs, f));
run("npm", ["install", "--no-audit", "--no-fund", ...tarballs], app);
const names = dirs.map((d) => JSON.parse(readFileSync(join(d, "package.json"), "utf8")).name);
const probe = names.map((n) => `await import(${JSON.stringify(n)});`).join("\n");
writeFileSync(join(app, "probe.mjs"), `${probe}\nconsole.log("imported ${names.length} packages");\n`);
console.log(run("node", ["probe.mjs"], app).trim());
console.log(`${tarballs.length} tarballs installed into ${app}`);
