#!/usr/bin/env node
// Scaffolds a workspace package with the repository's conventions:
//   node scripts/new-package.mjs <folder> <npm-name> "<one-line description>" [dep ...]
// e.g. node scripts/new-package.mjs adapters/sd3 @edit-r1/adapter-sd3 "Stable Diffusion 3 adapter" @edit-r1/core
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [folder, name, description, ...deps] = process.argv.slice(2);
if (!folder || !name || !description) {
  console.error(
    'usage: node scripts/new-package.mjs <folder> <npm-name> "<description>" [workspace-dep ...]',
  );
  process.exit(2);
}
if (existsSync(join(folder, "package.json"))) {
  console.error(`${folder}/package.json already exists; refusing to overwrite it.`);
  process.exit(2);
}
const depth = folder.split("/").length;
const up = "../".repeat(depth);
mkdirSync(join(folder, "src"), { recursive: true });
const pkg = {
  name,
  version: "0.0.0",
  description,
  license: "Apache-2.0",
  type: "module",
  sideEffects: false,
  exports: {
    ".": { types: "./dist/index.d.ts", default: "./dist/index.js" },
    "./package.json": "./package.json",
  },
  main: "./dist/index.js",
  types: "./dist/index.d.ts",
  files: ["dist", "!dist/**/*.test.*", "README.md"],
  engines: { node: ">=20.12" },
  repository: { type: "git", url: "git+https://github.com/edit-r1/edit-r1-ts.git", directory: folder },
  publishConfig: { access: "public" },
  scripts: {
    build: "tsc -p tsconfig.build.json",
    typecheck: "tsc -p tsconfig.json --noEmit",
    test: "vitest run",
  },
  dependencies: Object.fromEntries(deps.map((d) => [d, "workspace:^"])),
};
const write = (f, s) => writeFileSync(join(folder, f), s);
write("package.json", `${JSON.stringify(pkg, null, 2)}\n`);
write(
  "tsconfig.json",
  `${JSON.stringify({ extends: `${up}tsconfig.base.json`, compilerOptions: { rootDir: "src", outDir: "dist" }, include: ["src"] }, null, 2)}\n`,
);
write(
  "tsconfig.build.json",
  `${JSON.stringify({ extends: "./tsconfig.json", exclude: ["src/**/*.test.ts", "src/**/test-*.ts"] }, null, 2)}\n`,
);
write(
  "README.md",
  `# ${name}\n\n${description}\n\n## Where it fits\n\nTODO\n\n## Why\n\nTODO\n\n## How\n\nTODO\n\n## Gotchas\n\nTODO\n`,
);
write("vitest.config.ts", `export { default } from "${up}vitest.shared.js";\n`);
if (!existsSync(join(folder, "src/index.ts"))) write("src/index.ts", "export {};\n");
// Leave the new files in the repository's formatting so `pnpm lint` stays clean.
execFileSync("pnpm", ["exec", "biome", "check", "--write", folder], { stdio: "ignore" });
console.log(`created ${folder} (${name}); run pnpm install`);
