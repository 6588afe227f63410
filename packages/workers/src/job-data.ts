import type { RgbImage, RolloutBatch, RolloutJob } from "@edit-r1/core";
import { RolloutJobError } from "./errors.js";

/**
 * What a worker needs to rebuild the trainer's policy, sampler and prompts. `options` are the adapter's load
 * options as the trainer resolved them (a worker overrides the device, and may override paths, with flags).
 */
export interface PolicySpec {
  adapter: string;
  options: Record<string, unknown>;
  sampler: string;
  /** The training data (Edit-R1 JSONL) as the trainer sees it; workers read prompts from it by index. */
  data: string;
}

/** A queue job: one rollout batch of one run. */
export interface RolloutJobData {
  /** The trainer session that handed it out; results of other sessions are stale. */
  run: string;
  job: RolloutJob;
  spec: PolicySpec;
  /** Where the old-policy versions are (`VersionStore.location`). */
  store: string;
}

/** A worker's result, JSON-safe: binary data as base64. */
export interface RolloutResultData {
  run: string;
  step: number;
  batch: number;
  version: number;
  worker: string;
  seconds: number;
  x0: string;
  sigmas: number[];
  images: { width: number; height: number; data: string }[];
}

export function jobId(run: string, job: RolloutJob): string {
  return `${run}-s${job.step}-b${job.batch}`;
}

function toBase64(view: ArrayBufferView): string {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).toString("base64");
}

export function encodeResult(
  data: RolloutJobData,
  batch: RolloutBatch,
  worker: string,
  seconds: number,
): RolloutResultData {
  return {
    run: data.run,
    step: data.job.step,
    batch: data.job.batch,
    version: data.job.version,
    worker,
    seconds,
    x0: toBase64(batch.x0),
    sigmas: batch.sigmas,
    images: batch.images.map((im) => ({ width: im.width, height: im.height, data: toBase64(im.data) })),
  };
}

export function decodeResult(result: RolloutResultData, where: string): RolloutBatch {
  const bytes = Buffer.from(result.x0, "base64");
  if (bytes.byteLength % 4 !== 0)
    throw new RolloutJobError(
      `${where}: the result's latents are ${bytes.byteLength} bytes, not float32 values`,
    );
  // Copy into a fresh, aligned buffer (a Buffer may sit at any offset of a shared pool).
  const x0 = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(x0.buffer).set(bytes);
  const images: RgbImage[] = result.images.map((im) => {
    const data = new Uint8Array(Buffer.from(im.data, "base64"));
    if (data.length !== im.width * im.height * 3)
      throw new RolloutJobError(`${where}: an image of ${im.width}×${im.height} has ${data.length} bytes`);
    return { width: im.width, height: im.height, data };
  });
  return { x0, sigmas: result.sigmas, images };
}
