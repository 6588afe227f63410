import { test } from "vitest";
import { probeProvider, WEBGPU_INSTALL_HINT } from "./providers.js";

/**
 * `@edit-r1/engine/testing`: helpers for test suites (vitest), here and in the packages that build on the engine.
 *
 * For tests: whether this machine's onnxruntime-node runs WebGPU (a one-node session in a child process, CPU
 * fallback disabled). When it does not, the WebGPU tests are skipped with the reason printed, except in CI
 * (`CI` set, as `.ci/run` does after `scripts/ensure-vulkan.sh`), where a failing test says what is missing:
 * a CI machine without a working WebGPU provider is a broken CI machine, not a reason to test less.
 */
export async function webgpuForTests(what: string): Promise<boolean> {
  const probe = await probeProvider("webgpu");
  if (probe.loads) return true;
  const reason = `WebGPU does not load here (${probe.error ?? "no error given"}). ${WEBGPU_INSTALL_HINT}.`;
  if (isCI()) {
    test(`${what}: WebGPU loads (required in CI)`, () => {
      throw new Error(reason);
    });
  } else {
    console.warn(`skipping ${what}: ${reason}`);
  }
  return false;
}

function isCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== "" && ci !== "0" && ci.toLowerCase() !== "false";
}
