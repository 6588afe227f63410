import type { Adapter, Benchmark } from "@edit-r1/core";
import { UsageError } from "./args.js";

/**
 * The adapters and benchmarks the command knows by name. Each is imported only when asked for, so a
 * missing optional package fails with a clear message instead of slowing down every command.
 */
const ADAPTERS: Record<string, { pkg: string; load: () => Promise<Adapter> }> = {};

export interface BenchmarkEntry {
  pkg: string;
  create: (options: {
    limit?: number;
    judge?: string;
    env: NodeJS.ProcessEnv;
  }) => Promise<Benchmark & BenchmarkExtras>;
}

/** Optional hooks a benchmark can offer for richer reports. */
export interface BenchmarkExtras {
  writeReferenceImages?(outDir: string): Promise<void>;
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
  options: Parameters<BenchmarkEntry["create"]>[0],
): Promise<Benchmark & BenchmarkExtras> {
  const entry = BENCHMARKS[name];
  if (!entry)
    throw new UsageError(`Unknown benchmark "${name}". Benchmarks: ${Object.keys(BENCHMARKS).join(", ")}.`);
  return entry.create(options);
}
