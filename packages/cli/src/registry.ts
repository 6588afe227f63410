import { createRequire } from "node:module";
import {
  type Adapter,
  type AdapterLoadOptions,
  type Benchmark,
  ConfigError,
  checkAdapter,
} from "@edit-r1/core";
import { UsageError } from "./args.js";

/**
 * Adapters are the packages this command depends on named `@edit-r1/adapter-<name>`, each exporting its core
 * Adapter as `adapter`: adding a base model is one new package and one dependency line in package.json. A
 * third-party adapter can be named by its package (`--adapter @acme/edit-r1-adapter-x`). Adapters and benchmarks
 * are imported only when asked for, so a missing optional package fails with a clear message.
 */
const ADAPTER_PREFIX = "@edit-r1/adapter-";

function adapterPackages(): Record<string, string> {
  const pkg = createRequire(import.meta.url)("../package.json") as { dependencies?: Record<string, string> };
  return Object.fromEntries(
    Object.keys(pkg.dependencies ?? {})
      .filter((d) => d.startsWith(ADAPTER_PREFIX))
      .sort()
      .map((d) => [d.slice(ADAPTER_PREFIX.length), d]),
  );
}

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
  return Object.keys(adapterPackages());
}

/** The Adapter of `name` (an adapter name or an npm package exporting `adapter`). */
export async function loadAdapter(name: string): Promise<Adapter> {
  const pkg = adapterPackages()[name] ?? (name.includes("/") ? name : undefined);
  if (!pkg) throw new UsageError(`Unknown adapter "${name}". Adapters: ${adapterNames().join(", ")}.`);
  let module: { adapter?: Adapter };
  try {
    module = (await import(pkg)) as { adapter?: Adapter };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND")
      throw new UsageError(`Adapter "${name}" needs the package ${pkg}; install it (pnpm add ${pkg}).`);
    throw err;
  }
  const adapter = module.adapter;
  if (!adapter || typeof adapter.loadEditor !== "function" || !adapter.capabilities || !adapter.cli)
    throw new UsageError(
      `${pkg} does not export a core Adapter as \`adapter\` (name, capabilities, cli, loadEditor); ` +
        "is it an Edit-R1 adapter package built for this version?",
    );
  return adapter;
}

/**
 * core's checkAdapter for options that came from flags: a value the adapter cannot take (`--base sd3`,
 * `--dtype float16` where only float32 runs, `--resolution 17x9`) is a usage error, exit code 2, like a
 * malformed flag; the message names the flag and the values that are accepted.
 */
export function checkAdapterFlags(
  adapter: Adapter,
  options: AdapterLoadOptions,
  purpose?: Parameters<typeof checkAdapter>[2],
): void {
  try {
    checkAdapter(adapter, options, purpose);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
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
