#!/usr/bin/env node
// Writes a compact shape manifest (gzip'd JSON) of a full-size checkpoint from a key list
// ("# <name> config={…}" header, then "<key>\t[d0, d1, …]" per tensor): what `edit-r1 plan` builds the
// full-size graphs from without the weights. Usage:
//   node scripts/shape-manifest.mjs <keys.txt> <out.json.gz> --dtype bfloat16 --source "<repo>/<folder>"
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const [input, output, ...rest] = process.argv.slice(2);
const flag = (name) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : undefined;
};
if (!input || !output) {
  console.error("usage: shape-manifest.mjs <keys.txt> <out.json.gz> --dtype bfloat16 --source <repo/folder>");
  process.exit(2);
}
const dtype = flag("dtype") ?? "bfloat16";
const lines = readFileSync(input, "utf8").split("\n");
let config;
let declared;
const tensors = {};
for (const line of lines) {
  if (line.startsWith("#")) {
    const c = /config=(\{.*\})\s*$/.exec(line);
    if (c) config = JSON.parse(c[1]);
    const t = /tensors=(\d+)/.exec(line);
    if (t) declared = Number(t[1]);
    continue;
  }
  if (!line.trim()) continue;
  const [key, shape] = line.split("\t");
  tensors[key] = JSON.parse(shape);
}
const count = Object.keys(tensors).length;
if (declared !== undefined && declared !== count)
  throw new Error(`${input}: the header declares ${declared} tensors, the list has ${count}`);
if (!config) throw new Error(`${input}: no config= header`);
const manifest = { source: flag("source") ?? input, dtype, config, tensors };
writeFileSync(output, gzipSync(JSON.stringify(manifest), { level: 9 }));
console.log(`${output}: ${count} tensors, ${dtype}`);
