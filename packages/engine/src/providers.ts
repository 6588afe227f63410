import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { readElfDependencies, sonameMajor } from "./elf-needed.js";
import { Graph } from "./graph.js";
import type { ExecutionProvider } from "./kernels.js";
import { lower } from "./lower.js";
import * as ops from "./ops.js";

/**
 * What this machine's onnxruntime-node can run on, found by trying: each execution provider opens and runs a
 * one-node session in a child process (a provider that crashes while loading takes only the child down), with
 * CPU fallback disabled, so "loads" means the node ran on that provider. Plus the facts a user needs to fix what
 * does not load: the CUDA major the CUDA provider library links (its ELF DT_NEEDED entries), which of those
 * libraries the dynamic linker cannot find, and the GPU nvidia-smi sees.
 */

/** Where onnxruntime-node is installed and the folder of its native binaries for this platform. */
export interface OnnxruntimeInstall {
  version: string;
  /** The package folder. */
  dir: string;
  /** bin/napi-v6/<platform>/<arch>. */
  binDir: string;
}

export function onnxruntimeInstall(): OnnxruntimeInstall {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve("onnxruntime-node/package.json");
  const dir = path.dirname(pkgJson);
  const version = (JSON.parse(readFileSync(pkgJson, "utf8")) as { version: string }).version;
  return { version, dir, binDir: path.join(dir, "bin", "napi-v6", process.platform, process.arch) };
}

/** The result of trying one provider. */
export interface ProviderProbe {
  provider: ExecutionProvider;
  loads: boolean;
  /** onnxruntime's message (first lines) when it does not load. */
  error?: string;
}

/** The probe model: y = x + x for x = [1, 2, 3], float32 (every provider has Add). */
function probeBytes(): Uint8Array {
  const g = new Graph("provider_probe");
  const x = g.input("x", "float32", [3]);
  return lower(g, { outputs: { y: ops.add(x, x) } }).bytes;
}

const CHILD = `
const ort = require(process.env.EDIT_R1_ORT);
const bytes = Buffer.from(process.env.EDIT_R1_PROBE_MODEL, "base64");
const provider = process.env.EDIT_R1_PROBE_PROVIDER;
(async () => {
  try {
    const s = await ort.InferenceSession.create(bytes, {
      executionProviders: [provider],
      logSeverityLevel: 4,
      extra: provider === "cpu" ? {} : { session: { disable_cpu_ep_fallback: "1" } },
    });
    const out = await s.run({ x: new ort.Tensor("float32", Float32Array.from([1, 2, 3]), [3]) });
    const y = Array.from(out.y.data);
    await s.release();
    const ok = y.length === 3 && y[0] === 2 && y[1] === 4 && y[2] === 6;
    process.stdout.write(JSON.stringify(ok ? { loads: true } : { loads: false, error: "wrong result " + JSON.stringify(y) }));
  } catch (e) {
    process.stdout.write(JSON.stringify({ loads: false, error: String(e && e.message ? e.message : e) }));
  }
})();
`;

/** Tries `provider` in a child Node process (default time limit 60 s). */
export function probeProvider(provider: ExecutionProvider, timeoutMs = 60_000): Promise<ProviderProbe> {
  const ort = createRequire(import.meta.url).resolve("onnxruntime-node");
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["-e", CHILD],
      {
        timeout: timeoutMs,
        maxBuffer: 1 << 20,
        env: {
          ...process.env,
          EDIT_R1_ORT: ort,
          EDIT_R1_PROBE_MODEL: Buffer.from(probeBytes()).toString("base64"),
          EDIT_R1_PROBE_PROVIDER: provider,
        },
      },
      (err, stdout, stderr) => {
        try {
          const r = JSON.parse(stdout) as { loads: boolean; error?: string };
          // onnxruntime logs the cause (a library it could not load) to stderr, not in the exception.
          const log = nativeLog(stderr);
          const error = r.error ? firstLines(log ? `${r.error} / ${log}` : r.error, 4) : undefined;
          resolve({ provider, loads: r.loads, ...(error ? { error } : {}) });
        } catch {
          const why = err?.killed
            ? `timed out after ${timeoutMs / 1000} s`
            : err?.signal
              ? `the process crashed (${err.signal})`
              : `no answer (exit ${err?.code ?? 0})`;
          resolve({ provider, loads: false, error: firstLines(`${why}${stderr ? `: ${stderr}` : ""}`) });
        }
      },
    );
  });
}

function firstLines(s: string, n = 3): string {
  return s
    .split(/\n| \/ /)
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .slice(0, n)
    .join(" / ")
    .slice(0, 800);
}

/** onnxruntime's and Dawn's log lines, without colours, timestamps and source locations. */
function nativeLog(stderr: string): string {
  return stderr
    .replaceAll(String.fromCharCode(27), "")
    .replace(/\[[0-9;]*m/g, "")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("at "))
    .map((l) =>
      l.replace(/^.*\[ONNXRuntimeError\] : \d+ : \w+ : /, "").replace(/^\d{4}-\d\d-\d\d [\d:.]+ /, ""),
    )
    .join(" / ");
}

/** The CUDA provider library's links: which CUDA and cuDNN majors, and which libraries cannot be found. */
export interface CudaProviderLibrary {
  file: string;
  needed: string[];
  /** From libcudart/libcublas sonames (e.g. 12 for libcublas.so.12); undefined when neither is linked. */
  cudaMajor: number | undefined;
  cudnnMajor: number | undefined;
  /** NEEDED entries the dynamic linker would not find (LD_LIBRARY_PATH, the ld.so cache, RUNPATH, /lib, /usr/lib). */
  missing: string[];
}

/** Reads `libonnxruntime_providers_cuda.so` in onnxruntime-node's binaries, or undefined when it is not installed. */
export function cudaProviderLibrary(
  install: OnnxruntimeInstall = onnxruntimeInstall(),
  env: NodeJS.ProcessEnv = process.env,
): CudaProviderLibrary | undefined {
  const file = path.join(install.binDir, "libonnxruntime_providers_cuda.so");
  if (!existsSync(file)) return undefined;
  const { needed, runpath } = readElfDependencies(file);
  const major = (prefix: string) => {
    const soname = needed.find((n) => n.startsWith(`${prefix}.so.`));
    return soname ? sonameMajor(soname) : undefined;
  };
  const dirs = [
    ...(env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    ...runpath.map((p) => p.replace(/\$ORIGIN|\$\{ORIGIN\}/g, install.binDir)),
    ...DEFAULT_LIB_DIRS,
  ];
  const cache = ldCache();
  const missing = needed.filter((n) => !cache.has(n) && !dirs.some((d) => existsSync(path.join(d, n))));
  return {
    file,
    needed,
    cudaMajor: major("libcudart") ?? major("libcublas"),
    cudnnMajor: major("libcudnn"),
    missing,
  };
}

const DEFAULT_LIB_DIRS = [
  "/lib",
  "/usr/lib",
  "/lib64",
  "/usr/lib64",
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
];

/** Sonames in the ld.so cache (/etc/ld.so.cache via the folders /etc/ld.so.conf lists). */
function ldCache(): Set<string> {
  const names = new Set<string>();
  const confDirs: string[] = [];
  const readConf = (file: string) => {
    if (!existsSync(file)) return;
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const l = line.trim();
      if (!l || l.startsWith("#")) continue;
      if (l.startsWith("include ")) {
        const pattern = l.slice(8).trim();
        const dir = path.dirname(pattern);
        const suffix = path.basename(pattern).replace("*", "");
        if (existsSync(dir))
          for (const f of readdirSync(dir)) if (f.endsWith(suffix)) readConf(path.join(dir, f));
      } else confDirs.push(l);
    }
  };
  readConf("/etc/ld.so.conf");
  for (const d of confDirs) {
    try {
      for (const f of readdirSync(d)) names.add(f);
    } catch {
      // A folder the configuration lists but that does not exist.
    }
  }
  return names;
}

/** A GPU nvidia-smi reports. */
export interface NvidiaGpu {
  name: string;
  memoryMiB: number;
  driver: string;
}

export interface NvidiaSmiReport {
  gpus: NvidiaGpu[];
  /** The newest CUDA the driver supports ("CUDA Version" in nvidia-smi's banner). */
  driverCuda: string | undefined;
}

/** What nvidia-smi sees, or undefined when it is not installed or fails. */
export async function nvidiaSmi(timeoutMs = 15_000): Promise<NvidiaSmiReport | undefined> {
  const run = (args: string[]) =>
    new Promise<string | undefined>((resolve) =>
      execFile("nvidia-smi", args, { timeout: timeoutMs }, (err, stdout) =>
        resolve(err ? undefined : stdout),
      ),
    );
  const csv = await run(["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]);
  if (csv === undefined) return undefined;
  const gpus = csv
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [name, mem, driver] = line.split(",").map((s) => s.trim());
      return { name: name ?? "?", memoryMiB: Number(mem), driver: driver ?? "?" };
    });
  const banner = await run([]);
  const driverCuda = banner ? /CUDA Version:\s*([\d.]+)/.exec(banner)?.[1] : undefined;
  return { gpus, driverCuda };
}

/** The command that fetches onnxruntime-node's CUDA provider (the install script's manifest is named "cuda12" whatever CUDA it links). */
export const CUDA_INSTALL_COMMAND = "ONNXRUNTIME_NODE_INSTALL=cuda12 pnpm rebuild onnxruntime-node";

/**
 * How to give onnxruntime-node's bundled WebGPU provider an adapter on Linux: a Vulkan loader and driver (with no
 * GPU, Mesa's software driver lavapipe).
 */
export const WEBGPU_INSTALL_HINT =
  "Install a Vulkan loader and driver: as root, `scripts/ensure-vulkan.sh` from the edit-r1 repository does it " +
  "(apt packages libvulkan1 and mesa-vulkan-drivers; on Debian 12 from bookworm-backports, since Dawn refuses the " +
  "lavapipe of bookworm's own Mesa 22.3), or install your GPU vendor's driver, which brings its Vulkan driver";

/** The CUDA and cuDNN majors the CUDA provider of an onnxruntime release is built for, and where that is stated. */
export interface CudaRequirements {
  cuda: number;
  cudnn: number;
  source: string;
}

/**
 * What the CUDA provider that onnxruntime-node's install script downloads (the NuGet package
 * Microsoft.ML.OnnxRuntime.Gpu.Linux of the same version, from nuget.org) is built for. From the release notes,
 * not measured: onnxruntime 1.19–1.26 ship CUDA 12.x / cuDNN 9 there; from 1.27 the nuget.org GPU packages are
 * CUDA 13.x / cuDNN 9 and the CUDA 12 builds moved to a separate, deprecated feed (microsoft/onnxruntime issues
 * 29032 and 29767). `cudaProviderLibrary` reads the truth from the installed library.
 */
export function cudaRequirements(version: string): CudaRequirements {
  const [major, minor] = version.split(".").map(Number) as [number, number];
  if (major === 1 && minor >= 27)
    return {
      cuda: 13,
      cudnn: 9,
      source: "onnxruntime ≥ 1.27 release notes: nuget.org GPU packages are CUDA 13 builds",
    };
  if (major === 1 && minor >= 19)
    return { cuda: 12, cudnn: 9, source: "onnxruntime 1.19–1.26 release notes: CUDA 12.x, cuDNN 9" };
  return { cuda: 11, cudnn: 8, source: "onnxruntime < 1.19: CUDA 11.8, cuDNN 8" };
}
