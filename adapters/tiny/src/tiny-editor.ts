import { batchNoise } from "@edit-r1/adapter-kit";
import {
  DpmSolverPlusPlus2MSampler,
  type Editor,
  type EditRequest,
  EulerSampler,
  type ParamSet,
  type RgbImage,
  type Sampler,
} from "@edit-r1/core";
import { unpackImage } from "./pack-image.js";
import { tinyConditions } from "./tiny-conditions.js";
import { TINY_IMAGE_SIZE, TINY_LATENT_SIZE } from "./tiny-config.js";
import type { TinyModel } from "./tiny-model.js";
import { tinySigmas } from "./tiny-schedule.js";

export interface TinyEditorOptions {
  /** Sampling steps. Default 12. */
  steps?: number;
  /** "euler" (default) or "dpm-solver++2m". */
  sampler?: "euler" | "dpm-solver++2m";
  /** Static time shift of the schedule. Default: the adapter's. */
  shift?: number;
  /** Noise seed; each request's noise is drawn from (seed, request key), so results do not depend on batching. */
  seed?: number;
  /** LoRA factors (PEFT keys) to apply; the base model when absent. */
  lora?: ParamSet;
  /** Requests per forward batch. Default 16. */
  batchSize?: number;
}

/** The tiny model as a benchmark Editor: a pinned, deterministic generation protocol. */
export function tinyEditor(model: TinyModel, defaultShift: number, options: TinyEditorOptions = {}): Editor {
  const steps = options.steps ?? 12;
  const samplerName = options.sampler ?? "euler";
  const sampler: Sampler = samplerName === "euler" ? new EulerSampler() : new DpmSolverPlusPlus2MSampler();
  const shift = options.shift ?? defaultShift;
  const seed = options.seed ?? 0;
  const batchSize = options.batchSize ?? 16;
  const sigmas = tinySigmas(steps, shift);
  return {
    name: options.lora ? "tiny+lora" : "tiny",
    protocol: {
      adapter: "tiny",
      resolution: `${TINY_IMAGE_SIZE}x${TINY_IMAGE_SIZE}`,
      steps,
      sampler: sampler.name,
      shift,
      seed,
      lora: options.lora ? "given" : "none",
    },
    async edit(requests: readonly EditRequest[]): Promise<RgbImage[]> {
      const out: RgbImage[] = [];
      for (let at = 0; at < requests.length; at += batchSize) {
        const chunk = requests.slice(at, at + batchSize);
        const conditions = tinyConditions(chunk, model.vocabulary, model.textTokens);
        const noise = batchNoise(
          seed,
          "tiny",
          chunk.map((r) => r.key),
          TINY_LATENT_SIZE,
        );
        const { x0 } = await sampler.sample(
          noise,
          sigmas,
          model.velocity(conditions, options.lora, chunk.length),
        );
        for (let b = 0; b < chunk.length; b++) {
          out.push(
            unpackImage(
              x0.subarray(b * TINY_LATENT_SIZE, (b + 1) * TINY_LATENT_SIZE),
              TINY_IMAGE_SIZE,
              TINY_IMAGE_SIZE,
            ),
          );
        }
      }
      return out;
    },
  };
}
