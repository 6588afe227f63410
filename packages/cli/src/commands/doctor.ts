import {
  CUDA_INSTALL_COMMAND,
  type CudaProviderLibrary,
  cudaProviderLibrary,
  cudaRequirements,
  EXECUTION_PROVIDERS,
  type NvidiaSmiReport,
  nvidiaSmi,
  onnxruntimeInstall,
  type ProviderProbe,
  probeProvider,
  WEBGPU_INSTALL_HINT,
} from "@edit-r1/engine";
import type { CommandContext } from "../context.js";

/** Everything `doctor` found, as `--json` prints it. */
export interface DoctorReport {
  onnxruntime: { version: string; binaries: string };
  providers: (ProviderProbe & { fix?: string })[];
  cudaProvider:
    | (Omit<CudaProviderLibrary, "file"> & { file: string; expected: { cuda: number; cudnn: number } })
    | { installed: false; expected: { cuda: number; cudnn: number; source: string } };
  gpu: NvidiaSmiReport | undefined;
  fixes: string[];
}

/** The engine's hint, starting lower-case as the other fixes do. */
const VULKAN_FIX = WEBGPU_INSTALL_HINT.charAt(0).toLowerCase() + WEBGPU_INSTALL_HINT.slice(1);

/**
 * `edit-r1 doctor`: which execution providers load here (a one-node session on each: cpu, webgpu, cuda), the CUDA
 * and cuDNN majors the CUDA provider links (its ELF DT_NEEDED entries) and which of those libraries cannot be
 * found, the GPUs nvidia-smi sees, and for each thing missing the command that fixes it. Exit 0 when the CPU
 * provider loads (every command works on --device cpu), 1 when not even that.
 */
export async function doctor(ctx: CommandContext): Promise<number> {
  const install = onnxruntimeInstall();
  const expected = cudaRequirements(install.version);
  const [probes, gpu] = await Promise.all([
    Promise.all(EXECUTION_PROVIDERS.map((p) => probeProvider(p))),
    nvidiaSmi(),
  ]);
  const lib = cudaProviderLibrary(install, ctx.env);
  const fixes: string[] = [];
  const providers = probes.map((p) => {
    const fix = p.loads ? undefined : fixFor(p, lib, expected, gpu);
    if (fix) fixes.push(`${p.provider}: ${fix}`);
    return { ...p, ...(fix ? { fix } : {}) };
  });
  const report: DoctorReport = {
    onnxruntime: { version: install.version, binaries: install.binDir },
    providers,
    cudaProvider: lib
      ? { ...lib, expected: { cuda: expected.cuda, cudnn: expected.cudnn } }
      : { installed: false, expected },
    gpu,
    fixes,
  };
  if (ctx.values.json === true) {
    ctx.out(JSON.stringify(report, null, 2));
    return probes.find((p) => p.provider === "cpu")?.loads ? 0 : 1;
  }

  ctx.out(`onnxruntime-node ${install.version} (${install.binDir})`);
  ctx.out("execution providers (a one-node session on each, CPU fallback disabled):");
  for (const p of providers) {
    ctx.out(`  ${p.provider.padEnd(7)} ${p.loads ? "loads" : "does not load"}`);
    if (!p.loads && p.error) ctx.out(`          ${p.error}`);
    if (p.fix) ctx.out(`          fix: ${p.fix}`);
  }
  if (lib) {
    ctx.out(
      `CUDA provider library: links CUDA ${lib.cudaMajor ?? "?"} and cuDNN ${lib.cudnnMajor ?? "?"} ` +
        `(${lib.needed.filter((n) => /cu|nv/.test(n)).join(", ") || "no CUDA libraries"})`,
    );
    if (lib.missing.length) ctx.out(`  not found by the dynamic linker: ${lib.missing.join(", ")}`);
  } else {
    ctx.out(
      `CUDA provider library: not installed (onnxruntime-node ${install.version} downloads a build for CUDA ${expected.cuda}.x and cuDNN ${expected.cudnn}.x: ${expected.source}; doctor reads the exact versions from the library once it is installed)`,
    );
  }
  if (gpu) {
    for (const g of gpu.gpus)
      ctx.out(`GPU: ${g.name}, ${(g.memoryMiB / 1024).toFixed(0)} GiB, driver ${g.driver}`);
    if (gpu.driverCuda) ctx.out(`  the driver supports CUDA up to ${gpu.driverCuda}`);
    if (gpu.gpus.length === 0) ctx.out("GPU: nvidia-smi runs but lists no GPU");
  } else {
    ctx.out("GPU: none seen (nvidia-smi is not installed or failed)");
  }
  const ok = providers.filter((p) => p.loads).map((p) => p.provider);
  ctx.out(
    ok.length
      ? `usable: ${ok.map((p) => `--device ${p}`).join(", ")}`
      : "usable: nothing; not even the CPU provider loads (reinstall: pnpm install --force)",
  );
  return ok.includes("cpu") ? 0 : 1;
}

/** The exact fix for a provider that did not load, from what was found. */
function fixFor(
  p: ProviderProbe,
  lib: CudaProviderLibrary | undefined,
  expected: { cuda: number; cudnn: number },
  gpu: NvidiaSmiReport | undefined,
): string | undefined {
  switch (p.provider) {
    case "cpu":
      return "onnxruntime-node's bundled libraries are missing or broken: `pnpm install --force`";
    case "webgpu":
      if (/libvulkan/.test(p.error ?? "") || /No supported adapters/.test(p.error ?? "")) return VULKAN_FIX;
      return `${VULKAN_FIX}; if one is installed, check it with \`vulkaninfo --summary\``;
    case "cuda": {
      if (!lib)
        return (
          `\`${CUDA_INSTALL_COMMAND}\` (downloads Microsoft.ML.OnnxRuntime.Gpu.Linux from api.nuget.org; ` +
          `then needs CUDA ${expected.cuda}.x and cuDNN ${expected.cudnn}.x libraries and an NVIDIA driver)`
        );
      if (lib.missing.length)
        return (
          `install ${describeMissing(lib)} and put their lib folders on LD_LIBRARY_PATH, e.g. ` +
          `\`export LD_LIBRARY_PATH=/usr/local/cuda-${lib.cudaMajor ?? expected.cuda}/lib64:/path/to/cudnn/lib:$LD_LIBRARY_PATH\``
        );
      if (!gpu || gpu.gpus.length === 0)
        return "no NVIDIA GPU or driver is visible (nvidia-smi): install the NVIDIA driver, or use --device cpu";
      if (
        gpu.driverCuda &&
        lib.cudaMajor !== undefined &&
        Number(gpu.driverCuda.split(".")[0]) < lib.cudaMajor
      )
        return `the driver supports CUDA ${gpu.driverCuda} but the provider links CUDA ${lib.cudaMajor}: update the NVIDIA driver`;
      return "see onnxruntime's message above";
    }
  }
}

function describeMissing(lib: CudaProviderLibrary): string {
  const cudnn = lib.missing.some((m) => m.startsWith("libcudnn"));
  const cuda = lib.missing.some((m) => !m.startsWith("libcudnn"));
  return [
    cuda
      ? `CUDA ${lib.cudaMajor ?? "?"}.x (${lib.missing.filter((m) => !m.startsWith("libcudnn")).join(", ")})`
      : "",
    cudnn ? `cuDNN ${lib.cudnnMajor ?? "?"}.x` : "",
  ]
    .filter(Boolean)
    .join(" and ");
}
