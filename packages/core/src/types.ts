import { ShapeError } from "./errors.js";

/**
 * The model-agnostic data types shared by adapters, samplers, rewards and benchmarks.
 * Versioned with INTERFACE_VERSION: a breaking change to any interface here bumps it, so
 * adapters and rewards built against another version fail at configuration time.
 */
export const INTERFACE_VERSION = 2;

/** An 8-bit RGB image in row-major HWC layout (what sharp decodes to, and what judges receive). */
export interface RgbImage {
  width: number;
  height: number;
  /** width × height × 3 bytes, row-major, channels last. */
  data: Uint8Array;
}

/**
 * One edit to make: an instruction applied to one or more source images, with an optional per-sample
 * requirement. Most edits have one image (`source`); multi-image edits (Qwen-Image-Edit-2509's "Picture 1",
 * "Picture 2", …) list every image in `sources`, whose first entry is `source`.
 */
export interface EditRequest {
  /** Stable identifier (data-set row, benchmark key); groups, caches and per-request noise key on it. */
  key: string;
  instruction: string;
  /** The (first) source image: what judges compare the edit with. */
  source: RgbImage;
  /** Every source image in order, `sources[0] === source`; absent means `[source]`. */
  sources?: readonly RgbImage[];
  /**
   * Identifies the source image (its data-set path, a content hash); with the instruction it forms the
   * group key, so rows sharing an instruction but not an image are separate groups. Defaults to `key`.
   */
  sourceKey?: string;
  /** Task-specific judging requirement (Edit-R1's "requirement" field), shown to the judge. */
  requirement?: string;
}

/** The source images of a request in order: `sources`, or `[source]` for a one-image edit. */
export function requestSources(request: EditRequest): readonly RgbImage[] {
  const { sources } = request;
  if (sources === undefined) return [request.source];
  if (sources.length === 0 || sources[0] !== request.source)
    throw new ShapeError(
      `request "${request.key}": sources must list the request's source image first (sources[0] === source); ` +
        "build multi-image requests with requestWithSources()",
    );
  return sources;
}

/**
 * Rejects a request with more source images than `max` (what the adapter declared as maxSourceImages), naming
 * the request and the adapter.
 */
export function checkSourceCount(request: EditRequest, max: number, adapter: string): void {
  const n = requestSources(request).length;
  if (n > max)
    throw new ShapeError(
      `request "${request.key}" has ${n} source images, but adapter "${adapter}" edits at most ${max} at once; ` +
        "use an adapter with multi-image editing (e.g. Qwen-Image-Edit-2509) or give one image",
    );
}

/** A request editing several images (the first becomes `source`). */
export function requestWithSources(
  request: Omit<EditRequest, "source" | "sources">,
  sources: readonly RgbImage[],
): EditRequest {
  if (sources.length === 0) throw new ShapeError(`request "${request.key}": give at least one source image`);
  return { ...request, source: sources[0]!, sources: [...sources] };
}

/** What a reward scores: the request plus the edited image. */
export interface RewardInput extends EditRequest {
  edited: RgbImage;
}

export interface RewardOutput {
  /** In [0, 1]. A reward never invents a score: on failure it throws. */
  score: number;
  /** Named parts of the score (a composed reward logs each). */
  components: Record<string, number>;
  /** Raw judge output (top logprobs, text) kept for logs. */
  raw?: unknown;
}

/** A reward model: scores a batch of edits. Implementations may batch, cache and run requests concurrently. */
export interface Reward {
  readonly name: string;
  score(batch: readonly RewardInput[], options?: { signal?: AbortSignal }): Promise<RewardOutput[]>;
  /** Frees sockets, servers or workers. */
  close?(): Promise<void>;
}

/** Velocity of the flow at sigma for a batch of flattened latents (row-major, batch first). */
export type VelocityFn = (
  x: Float32Array,
  sigma: number,
  step: number,
) => Promise<Float32Array> | Float32Array;

export interface SampleResult {
  /** The clean latents x0 (sigma = 0). */
  x0: Float32Array;
  /** Every intermediate latent, x at sigmas[0] first, when requested. */
  trajectory?: Float32Array[];
}

/**
 * A black-box sampler: integrates a velocity field from noise at sigmas[0] down to sigmas[last] (= 0).
 * DiffusionNFT never needs its likelihood, so any deterministic or stochastic solver works.
 */
export interface Sampler {
  readonly name: string;
  sample(
    noise: Float32Array,
    sigmas: readonly number[],
    velocity: VelocityFn,
    options?: { keepTrajectory?: boolean },
  ): Promise<SampleResult>;
}

/** One scored item of a benchmark. */
export interface BenchmarkItemResult {
  key: string;
  category: string;
  /** Undefined when the item failed (missing image, unparsable judge reply); `error` says why. */
  score?: number;
  scores?: Record<string, number>;
  error?: string;
}

export interface BenchmarkReport {
  benchmark: string;
  /** Per-category means and the overall aggregate, as the benchmark defines it. */
  categories: Record<string, { mean: number; count: number }>;
  overall: number;
  items: BenchmarkItemResult[];
  /** Generation protocol and judge settings, recorded with the results. */
  protocol: Record<string, unknown>;
  excluded: number;
}

/**
 * Anything that makes edits: an adapter loaded with its weights (and optional LoRA) plus a pinned generation
 * protocol. Benchmarks run against an Editor, so every adapter is benchmarked the same way.
 */
export interface Editor {
  readonly name: string;
  /** The pinned generation settings (steps, guidance, seed, resolution, LoRA), recorded with results. */
  readonly protocol: Record<string, unknown>;
  edit(requests: readonly EditRequest[]): Promise<RgbImage[]>;
  close?(): Promise<void>;
}

export interface BenchmarkRunOptions {
  /** Only the first N items (for smoke runs). */
  limit?: number;
  /** Where outputs (`<key>.png`) and reports go; finished items found there are not regenerated. */
  outDir?: string;
  /** Items per editor call. */
  batchSize?: number;
  /** Progress callback: items done, items total. */
  onProgress?: (done: number, total: number) => void;
}

/** A benchmark: a data set, a pinned generation protocol, a judge protocol and an aggregation. */
export interface Benchmark {
  readonly name: string;
  run(editor: Editor, options?: BenchmarkRunOptions): Promise<BenchmarkReport>;
}
