import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { openSafetensors } from "@edit-r1/engine";

/** A model fixture directory (see fixtures/README.md): meta.json, weights.safetensors, io.safetensors. */
export interface ModelFixture {
  dir: string;
  name: string;
  meta: { kind: string; config: Record<string, unknown> } & Record<string, unknown>;
  weightsPath: string;
}

/** The fixtures folder: `EDIT_R1_FIXTURES`, else the nearest `fixtures/` above this file. */
export function fixturesRoot(): string {
  const env = process.env.EDIT_R1_FIXTURES;
  if (env) return resolve(env);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "fixtures");
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new Error("no fixtures/ folder above the models package; set EDIT_R1_FIXTURES");
    dir = up;
  }
}

/** Every fixture directory whose meta.json has `kind`. */
export function fixturesOfKind(kind: string): ModelFixture[] {
  const root = fixturesRoot();
  const out: ModelFixture[] = [];
  for (const name of readdirSync(root).sort()) {
    const metaPath = join(root, name, "meta.json");
    if (!existsSync(metaPath)) continue;
    const meta = JSON.parse(readFileSync(metaPath, "utf8"));
    if (meta.kind === kind) {
      out.push({ dir: join(root, name), name, meta, weightsPath: join(root, name, "weights.safetensors") });
    }
  }
  return out;
}

/** All tensors of a fixture's io.safetensors as float32, with their shapes. */
export async function readFixtureIo(
  fixture: ModelFixture,
): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  return readAllFloat32(join(fixture.dir, "io.safetensors"));
}

/** ‖a − b‖ / ‖b‖. */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relativeL2: lengths differ (${a.length} vs ${b.length})`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return Math.sqrt(num / den);
}

/**
 * Every tensor of a safetensors file as float32, held in memory: floats widened, integers (e.g. an int64
 * attention mask) converted by value.
 */
export async function readAllFloat32(
  path: string,
): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const ckpt = await openSafetensors(path);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const name of ckpt.names()) {
    const info = ckpt.get(name);
    const data = /^(?:int|uint|bool)/.test(info.dtype)
      ? Float32Array.from(await ckpt.read(name), Number)
      : await ckpt.readFloat32(name);
    out.set(name, { shape: info.shape, data });
  }
  return out;
}

/** Largest |a − b|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Deterministic pseudo-random values in [−scale, scale) (a 32-bit LCG; tests only need reproducible noise). */
export function noise(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}
