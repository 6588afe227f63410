import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FixtureError } from "./fixture-error.js";
import {
  isModelFixtureKind,
  MODEL_FIXTURE_KINDS,
  type ModelFixtureKind,
  REGISTRY_FILE,
} from "./fixture-registry.js";
import { fixturesRoot, repositoryRoot } from "./fixtures-root.js";
import { type Float32Tensors, readAllFloat32 } from "./read-all-float32.js";

/** A model fixture folder (see fixtures/README.md): meta.json, weights.safetensors, io.safetensors. */
export interface ModelFixture {
  /** Absolute path of the folder. */
  dir: string;
  /** The folder's name. */
  name: string;
  /** meta.json: `kind`, the diffusers `config`, and whatever else the kind records (e.g. `img_shapes`). */
  meta: { kind: string; config: Record<string, unknown> } & Record<string, unknown>;
  weightsPath: string;
  ioPath: string;
}

/** Reads and parses a JSON file, naming the file when it does not parse. */
export function readJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new FixtureError(`${path} is not valid JSON (${(e as Error).message}): fix or remove it`);
  }
}

/**
 * Every folder directly under `root` whose meta.json has `kind`, sorted by name. Without `root`: those of the
 * folder in use (`fixturesRoot()`); a held-out folder (EDIT_R1_FIXTURES) that holds no case of `kind` gives
 * the repository's own, so every kind's tests check something in a held-out run.
 * Throws a FixtureError when `kind` is not registered in MODEL_FIXTURE_KINDS, so a test cannot ask for a
 * kind nobody audits (and silently find none).
 */
export function fixturesOfKind(kind: ModelFixtureKind, root?: string): ModelFixture[] {
  if (root !== undefined) return fixturesIn(kind, root);
  const inUse = fixturesIn(kind, fixturesRoot());
  const own = join(repositoryRoot(), "fixtures");
  return inUse.length > 0 || fixturesRoot() === own ? inUse : fixturesIn(kind, own);
}

function fixturesIn(kind: ModelFixtureKind, root: string): ModelFixture[] {
  if (!isModelFixtureKind(kind)) {
    throw new FixtureError(
      `fixture kind "${kind}" is not registered: add it to MODEL_FIXTURE_KINDS in ${REGISTRY_FILE} ` +
        `(known kinds: ${Object.keys(MODEL_FIXTURE_KINDS).join(", ")})`,
    );
  }
  const out: ModelFixture[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = join(root, entry.name);
    const metaPath = join(dir, "meta.json");
    if (!existsSync(metaPath)) continue;
    const meta = readJsonFile(metaPath) as ModelFixture["meta"];
    if (meta?.kind !== kind) continue;
    out.push({
      dir,
      name: entry.name,
      meta: { ...meta, config: meta.config ?? {} },
      weightsPath: join(dir, "weights.safetensors"),
      ioPath: join(dir, "io.safetensors"),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** All tensors of a fixture's io.safetensors (`in.<name>`, `out.<name>`) as float32, with their shapes. */
export function readFixtureIo(fixture: ModelFixture): Promise<Float32Tensors> {
  return readAllFloat32(fixture.ioPath);
}
