import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { decodeSafetensorsF32, encodeSafetensorsF32, type ParamSet } from "@edit-r1/core";
import { writeFileAtomic } from "@edit-r1/engine";
import { WorkersConfigError } from "./errors.js";

/**
 * Where the trainer publishes old-policy versions (the LoRA parameters a rollout job names) and workers read
 * them. One safetensors file per version, `v-<version>.safetensors`, float32, the policy's own names.
 */
export interface VersionStore {
  /** What jobs carry so that workers find the store (a folder path or an http(s) URL). */
  readonly location: string;
  write(version: number, params: ParamSet): Promise<void>;
  read(version: number): Promise<ParamSet>;
  /** Deletes versions below `version` (nothing for read-only stores). */
  prune(version: number): Promise<void>;
}

export function versionFileName(version: number): string {
  return `v-${String(version).padStart(8, "0")}.safetensors`;
}

/** A folder on storage the trainer and the workers share (NFS, a mounted bucket, or one machine's disk). */
export class FolderVersionStore implements VersionStore {
  readonly location: string;

  constructor(dir: string) {
    this.location = resolve(dir);
  }

  async write(version: number, params: ParamSet): Promise<void> {
    mkdirSync(this.location, { recursive: true });
    // Atomic: a worker never reads half a version.
    await writeFileAtomic(join(this.location, versionFileName(version)), encodeSafetensorsF32(params));
  }

  async read(version: number): Promise<ParamSet> {
    const path = join(this.location, versionFileName(version));
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new WorkersConfigError(
        `old-policy version ${version} is not in the version store ${this.location} (${(err as NodeJS.ErrnoException).code ?? err}); ` +
          "the folder must be shared with the trainer (or pass the worker --store with where it is mounted here)",
      );
    }
    return decodeSafetensorsF32(bytes, path).tensors;
  }

  async prune(version: number): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.location);
    } catch {
      return;
    }
    for (const name of names) {
      const m = /^v-(\d+)\.safetensors$/.exec(name);
      if (m && Number(m[1]) < version) rmSync(join(this.location, name), { force: true });
    }
  }
}

/** Versions read over HTTP(S), from a static server in front of the trainer's folder. Workers only. */
export class HttpVersionStore implements VersionStore {
  constructor(readonly location: string) {}

  async write(): Promise<void> {
    throw new WorkersConfigError(
      `the version store ${this.location} is a URL, which workers read; the trainer writes to a folder (train --store DIR)`,
    );
  }

  async read(version: number): Promise<ParamSet> {
    const url = new URL(
      versionFileName(version),
      this.location.endsWith("/") ? this.location : `${this.location}/`,
    );
    const res = await fetch(url).catch((err: Error) => {
      throw new WorkersConfigError(`cannot fetch old-policy version ${version} from ${url}: ${err.message}`);
    });
    if (!res.ok)
      throw new WorkersConfigError(
        `cannot fetch old-policy version ${version} from ${url}: HTTP ${res.status}`,
      );
    return decodeSafetensorsF32(new Uint8Array(await res.arrayBuffer()), url.toString()).tensors;
  }

  async prune(): Promise<void> {}
}

/** A store for a location: an http(s) URL reads over HTTP, anything else is a folder. */
export function openVersionStore(location: string): VersionStore {
  return /^https?:\/\//.test(location) ? new HttpVersionStore(location) : new FolderVersionStore(location);
}
