import type { Adapter, Benchmark } from "@edit-r1/core";
import { UsageError } from "./args.js";

/**
 * The adapters and benchmarks the command knows by name. Each is imported only when asked for, so a
 * missing optional package fails with a clear message instead of slowing down every command.
 */
const ADAPTERS: Record<string, { pkg: string; load: () => Promise<Adapter> }> = {
  tiny: {
    pkg: "@edit-r1/adapter-tiny",
    load: async () => (await import("@edit-r1/adapter-tiny")).tinyAdapter,
  },
  "flux-kontext": {
    pkg: "@edit-r1/adapter-flux-kontext",
    load: async () => (await import("@edit-r1/adapter-flux-kontext")).adapter,
  },
};

export interface BenchmarkCreateOptions {
  /** Judge spec (`mllm:<url>?model=…`); the EDIT_R1_JUDGE_* variables when omitted. */
  judge?: string;
  /** Local folder or Hub dataset id of the benchmark data. */
  data?: string;
  language?: string;
  subset?: string;
  env: NodeJS.ProcessEnv;
}

export interface BenchmarkEntry {
  pkg: string;
  create: (options: BenchmarkCreateOptions) => Promise<Benchmark & BenchmarkExtras>;
}

/** Optional hook a benchmark can offer: where an item's images are, relative to its output folder. */
export interface BenchmarkExtras {
  galleryImages?(item: { key: string }): {
    source?: string;
    edited?: string;
    target?: string;
    instruction?: string;
  };
}

const BENCHMARKS: Record<string, BenchmarkEntry> = {
  shapes: {
    pkg: "@edit-r1/bench-shapes",
    create: async () => {
      const { ShapesBenchmark } = await import("@edit-r1/bench-shapes");
      return new ShapesBenchmark();
    },
  },
  imgedit: {
    pkg: "@edit-r1/bench-imgedit",
    create: async ({ judge, data, env }) => {
      const { benchJudgeOptionsFromSpec } = await import("@edit-r1/rewards");
      const { createImgEditBenchmark } = await import("@edit-r1/bench-imgedit");
      return createImgEditBenchmark({
        data,
        judge: judge ? benchJudgeOptionsFromSpec(judge, env) : undefined,
      });
    },
  },
  gedit: {
    pkg: "@edit-r1/bench-gedit",
    create: async ({ judge, data, language, subset, env }) => {
      const { benchJudgeOptionsFromSpec } = await import("@edit-r1/rewards");
      const { createGEditBenchmark } = await import("@edit-r1/bench-gedit");
      if (language !== undefined && language !== "en" && language !== "cn") {
        throw new UsageError(`--language must be en or cn, got "${language}".`);
      }
      if (subset !== undefined && subset !== "full" && subset !== "intersection") {
        throw new UsageError(`--subset must be full or intersection, got "${subset}".`);
      }
      return createGEditBenchmark({
        data,
        language,
        subset,
        judge: judge ? benchJudgeOptionsFromSpec(judge, env) : undefined,
      });
    },
  },
};

export function adapterNames(): string[] {
  return Object.keys(ADAPTERS);
}

export async function loadAdapter(name: string): Promise<Adapter> {
  const entry = ADAPTERS[name];
  if (!entry) throw new UsageError(`Unknown adapter "${name}". Adapters: ${adapterNames().join(", ")}.`);
  try {
    return await entry.load();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND") {
      throw new UsageError(
        `Adapter "${name}" needs the package ${entry.pkg}; install it (pnpm add ${entry.pkg}).`,
      );
    }
    throw err;
  }
}

export async function createBenchmark(
  name: string,
  options: BenchmarkCreateOptions,
): Promise<Benchmark & BenchmarkExtras> {
  const entry = BENCHMARKS[name];
  if (!entry)
    throw new UsageError(`Unknown benchmark "${name}". Benchmarks: ${Object.keys(BENCHMARKS).join(", ")}.`);
  return entry.create(options);
}
