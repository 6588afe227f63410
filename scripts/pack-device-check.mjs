#!/usr/bin/env node
// Packs what scripts/device-check.sh needs on a Linux x86-64 NVIDIA machine with no Node.js and no network into
// .device-check/payload.tar.gz (≤ 64 MiB, so the device tool can carry it): this machine's Node binary,
// onnxruntime-node's JS and its linux-x64 native files (the binding and libonnxruntime, plus any CUDA provider
// libraries installed next to them), the built engine / core / models / adapter-kit / shapes / tiny adapter / CLI,
// the device check's driver, and the Vulkan loader (libvulkan.so.1) when this machine has one.
// Run `pnpm build` (at least the packages above) first. Usage: node scripts/pack-device-check.mjs [--out dir]
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const outIndex = process.argv.indexOf("--out");
const OUT = outIndex > 0 ? process.argv[outIndex + 1] : join(REPO, ".device-check");
const LIMIT = 64 * 2 ** 20;
if (process.platform !== "linux" || process.arch !== "x64") {
  console.error(
    `pack-device-check: packs a linux-x64 Node binary; this is ${process.platform}-${process.arch}`,
  );
  process.exit(2);
}

const PACKAGES = {
  "@edit-r1/engine": "packages/engine",
  "@edit-r1/core": "packages/core",
  "@edit-r1/models": "packages/models",
  "@edit-r1/adapter-kit": "packages/adapter-kit",
  "@edit-r1/shapes": "packages/shapes",
  "@edit-r1/adapter-tiny": "adapters/tiny",
  "@edit-r1/cli": "packages/cli",
};

const stage = mkdtempSync(join(tmpdir(), "pack-device-check-"));
const root = join(stage, "edit-r1-device-check");
const app = join(root, "app");
const modules = join(app, "node_modules");
const notes = [];
/** Runtime files only: no tests, source maps or declarations. */
const runtimeFile = (src) => !/\.(test|spec)\.[cm]?js$|\.map$|\.d\.[cm]?ts$|\.tsbuildinfo$/.test(src);
const copy = (from, to, filter = runtimeFile) =>
  cpSync(from, to, { recursive: true, dereference: true, filter });

try {
  // Node.
  mkdirSync(join(root, "node", "bin"), { recursive: true });
  copy(process.execPath, join(root, "node", "bin", "node"));
  notes.push(`node ${process.version} (${process.execPath})`);

  // The workspace packages: package.json and what its "files" publish, built.
  for (const [name, dir] of Object.entries(PACKAGES)) {
    const src = join(REPO, dir);
    const pkg = JSON.parse(readFileSync(join(src, "package.json"), "utf8"));
    const dest = join(modules, name);
    mkdirSync(dest, { recursive: true });
    copy(join(src, "package.json"), join(dest, "package.json"));
    for (const entry of pkg.files ?? ["dist"]) {
      if (entry.startsWith("!") || entry === "README.md" || entry === "scripts") continue;
      if (!existsSync(join(src, entry))) {
        if (entry === "dist") throw new Error(`${dir}/dist is missing: run pnpm build first`);
        continue;
      }
      copy(join(src, entry), join(dest, entry));
    }
  }

  // Third-party runtime dependencies, resolved from the packages that import them.
  const resolveFrom = (dir, name) => {
    const req = createRequire(join(REPO, dir, "package.json"));
    let p = dirname(req.resolve(name));
    while (
      !existsSync(join(p, "package.json")) ||
      JSON.parse(readFileSync(join(p, "package.json"), "utf8")).name !== name
    )
      p = dirname(p);
    return realpathSync(p);
  };
  const ort = resolveFrom("packages/engine", "onnxruntime-node");
  const ortDest = join(modules, "onnxruntime-node");
  copy(join(ort, "package.json"), join(ortDest, "package.json"));
  copy(join(ort, "dist"), join(ortDest, "dist"));
  const native = join(ort, "bin", "napi-v6", "linux", "x64");
  copy(native, join(ortDest, "bin", "napi-v6", "linux", "x64"), () => true);
  const nativeFiles = readdirSync(native);
  const cuda = nativeFiles.filter((f) => f.includes("providers_cuda"));
  notes.push(
    `onnxruntime-node ${JSON.parse(readFileSync(join(ort, "package.json"), "utf8")).version}: ${nativeFiles.join(", ")}`,
  );
  notes.push(
    cuda.length
      ? `CUDA provider packed (${cuda.join(", ")}); it still needs the machine's CUDA and cuDNN libraries`
      : "no CUDA provider packed: onnxruntime-node's CUDA libraries are not installed here (ONNXRUNTIME_NODE_INSTALL=cuda12 needs nuget.org), so the check runs cpu and webgpu",
  );
  const common = resolveFrom(relative(REPO, ort), "onnxruntime-common");
  copy(join(common, "package.json"), join(modules, "onnxruntime-common", "package.json"));
  copy(join(common, "dist"), join(modules, "onnxruntime-common", "dist"));
  const tokenizers = resolveFrom("packages/models", "@huggingface/tokenizers");
  copy(join(tokenizers, "package.json"), join(modules, "@huggingface", "tokenizers", "package.json"));
  copy(join(tokenizers, "dist"), join(modules, "@huggingface", "tokenizers", "dist"));
  // core's image I/O imports sharp at load time; nothing the check runs reads or writes an image.
  mkdirSync(join(modules, "sharp"), { recursive: true });
  writeFileSync(
    join(modules, "sharp", "package.json"),
    JSON.stringify({ name: "sharp", version: "0.0.0-device-check-stub", main: "index.js" }),
  );
  writeFileSync(
    join(modules, "sharp", "index.js"),
    'module.exports = () => { throw new Error("sharp is not packed in the device check (no image I/O there)"); };\n',
  );

  // The driver.
  copy(join(REPO, "scripts", "device-check", "driver.mjs"), join(app, "driver.mjs"));

  // The Vulkan loader (the NVIDIA driver brings the Vulkan ICD; a bare container may lack the loader).
  let vulkan;
  try {
    const line = execFileSync("ldconfig", ["-p"], { encoding: "utf8" })
      .split("\n")
      .find((l) => /libvulkan\.so\.1 .*x86-64/.test(l));
    vulkan = line?.split("=>")[1]?.trim();
  } catch {}
  if (vulkan) {
    mkdirSync(join(root, "lib"), { recursive: true });
    copy(vulkan, join(root, "lib", "libvulkan.so.1"), () => true);
    notes.push(`Vulkan loader ${realpathSync(vulkan)}`);
  } else
    notes.push("no Vulkan loader here (run scripts/ensure-vulkan.sh first): webgpu needs the target's own");

  let commit = "unknown";
  try {
    commit = execFileSync("git", ["-C", REPO, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    if (
      execFileSync("git", ["-C", REPO, "status", "--porcelain", "--untracked-files=no"], {
        encoding: "utf8",
      }).trim()
    )
      commit += " (with uncommitted changes)";
  } catch {}
  writeFileSync(
    join(root, "MANIFEST.txt"),
    [`edit-r1 device check, packed ${new Date().toISOString()} from ${commit}`, ...notes, ""].join("\n"),
  );

  mkdirSync(OUT, { recursive: true });
  const tarball = join(OUT, "payload.tar.gz");
  execFileSync("sh", [
    "-c",
    'tar -cf - -C "$1" edit-r1-device-check | gzip -9 > "$2"',
    "pack",
    stage,
    tarball,
  ]);
  const size = statSync(tarball).size;
  for (const n of notes) console.log(`  ${n}`);
  console.log(`${relative(process.cwd(), tarball) || tarball}: ${(size / 2 ** 20).toFixed(1)} MiB`);
  if (size > LIMIT) {
    console.error(
      `pack-device-check: ${(size / 2 ** 20).toFixed(1)} MiB is over the 64 MiB the device tool carries`,
    );
    process.exitCode = 1;
  }
} finally {
  rmSync(stage, { recursive: true, force: true });
}
