import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Adapter, EditRequest } from "@edit-r1/core";
import type { Graph, Tensor } from "@edit-r1/engine";
import { afterAll, describe, expect, it } from "vitest";
import { loadAdapter } from "./registry.js";
import { patternRequest, webgpuLoads, webgpuMatchesCpu } from "./test-webgpu.js";

/**
 * The real-model adapters on `--device webgpu`, on their tiny replicas (on CI: Mesa's software Vulkan):
 * - FLUX-Kontext and Qwen-Image-Edit: the rollout velocity and the fused training step (loss and every LoRA
 *   gradient) with CPU fallback disabled, so every transformer node ran on WebGPU: max |webgpu − cpu| ≤ 1e-4 of
 *   the CPU output's scale (measured ≤ 3e-6; UniWorld runs these same graphs with its LoRA);
 * - a Qwen-Image-Edit edit (text encoder, VAE and transformer; onnxruntime keeps shape arithmetic on the CPU):
 *   the same pixels as on the CPU (measured: identical). FLUX-Kontext's edit also gave identical pixels when
 *   tried by hand, but its T5/CLIP/VAE sessions take about a minute on the software rasteriser, too long here.
 */

const WEBGPU = await webgpuLoads("the real-model adapters' WebGPU tests");
const tmp = mkdtempSync(join(tmpdir(), "cli-webgpu-adapters-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type GraphPolicy = {
  graphs(r: EditRequest, batch: number): Record<string, { graph: Graph; outputs: Record<string, Tensor> }>;
  prepare?(r: EditRequest[]): Promise<void>;
  dispose?(): Promise<void>;
};

async function replica(name: string): Promise<{ adapter: Adapter; model: string }> {
  const adapter = await loadAdapter(name);
  const model = join(tmp, name);
  await adapter.cli.writeReplica!(model, { seed: 0 });
  return { adapter, model };
}

describe.runIf(WEBGPU)("the real-model adapters on --device webgpu match --device cpu", () => {
  it("declare webgpu", async () => {
    for (const name of ["flux-kontext", "qwen-image-edit", "uniworld"])
      expect((await loadAdapter(name)).capabilities.devices, name).toContain("webgpu");
  });

  for (const name of ["flux-kontext", "qwen-image-edit"]) {
    it(`${name}: the rollout velocity and the training step, every transformer node on WebGPU`, async () => {
      const { adapter, model } = await replica(name);
      const policy = (await adapter.loadPolicy!({ model, resolution: [64, 64] })) as unknown as GraphPolicy;
      const request = patternRequest(64);
      try {
        await policy.prepare?.([request]);
        const worst = await webgpuMatchesCpu(policy.graphs(request, 1), 1e-4);
        console.log(
          `${name} graphs, webgpu vs cpu, ${worst.length} outputs; worst: ${worst.slice(0, 2).join("; ")}`,
        );
      } finally {
        await policy.dispose?.();
      }
    }, 300_000);
  }

  it("qwen-image-edit: an edit on webgpu gives the CPU's pixels", async () => {
    const { adapter, model } = await replica("qwen-image-edit");
    const images = [];
    for (const device of ["cpu", "webgpu"] as const) {
      const editor = await adapter.loadEditor({ model, device, steps: 2, resolution: [64, 64] });
      try {
        images.push((await editor.edit([patternRequest(64)]))[0]!);
      } finally {
        await editor.close?.();
      }
    }
    const [cpu, gpu] = images;
    let worst = 0;
    for (let i = 0; i < cpu!.data.length; i++)
      worst = Math.max(worst, Math.abs(gpu!.data[i]! - cpu!.data[i]!));
    console.log(`qwen-image-edit edit, webgpu vs cpu: max pixel difference ${worst} (8-bit levels)`);
    expect(worst).toBeLessThanOrEqual(1);
  }, 300_000);
});
