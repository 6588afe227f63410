import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { decodeImage, type EditRequest } from "@edit-r1/core";
import { type Graph, openSafetensors, type Tensor } from "@edit-r1/engine";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "./main.js";
import { loadAdapter } from "./registry.js";
import { patternRequest, webgpuLoads, webgpuMatchesCpu } from "./test-webgpu.js";

/**
 * The tiny adapter on `--device webgpu` against `--device cpu` (on CI: onnxruntime-node's WebGPU provider on
 * Mesa's software Vulkan, installed by scripts/ensure-vulkan.sh). Stated tolerances, float32:
 * - the rollout velocity and the fused training step (loss and every LoRA gradient), CPU fallback disabled so
 *   every node ran on WebGPU: max |webgpu − cpu| ≤ 1e-4 · max |cpu| per output (measured ≤ 2e-6);
 * - `edit`: the same 16×16 PNG up to one 8-bit level per channel (measured: identical);
 * - `train --steps 2` (on webgpu with the training state kept on the device, its AdamW in float32 against the
 *   CPU run's float64): per step, reward mean, loss and gradient norm within 1e-4 relative (measured ≤ 1e-6), and
 *   ≥ 99.5 % of the LoRA's elements within 1e-5 of each other. The rest may differ by up to AdamW's step (lr per
 *   step): its normalised update m/(√v + ε) turns the last-bit differences of gradients near ε into whole steps.
 */

const WEBGPU = await webgpuLoads("the CLI's WebGPU tests");

const root = resolve(import.meta.dirname, "../../..");
const source = join(root, "adapters/tiny/examples/red-circle-and-green-triangle.png");
const tmp = mkdtempSync(join(tmpdir(), "cli-webgpu-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe.runIf(WEBGPU)("the tiny adapter on --device webgpu matches --device cpu", () => {
  it("edit-r1 adapters lists webgpu among tiny's devices; --device webgpu passes the device check, --device tpu not", async () => {
    const adapter = await loadAdapter("tiny");
    expect(adapter.capabilities.devices).toContain("webgpu");
    const listed = await run(["adapters"]);
    expect(listed.out).toMatch(/^tiny: [\s\S]*?devices cpu\/cuda\/webgpu/m);
    const bad = await run([
      "edit",
      "--adapter",
      "tiny",
      "--image",
      source,
      "--instruction",
      "remove the red circle",
      "--device",
      "tpu",
      "--out",
      join(tmp, "never.png"),
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/does not run on device "tpu"; it supports cpu, cuda, webgpu/);
  });

  it("the rollout velocity and the training step's loss and LoRA gradients, every node on WebGPU", async () => {
    const adapter = await loadAdapter("tiny");
    const policy = await adapter.loadPolicy!({ device: "cpu" });
    const graphs = (
      policy as unknown as {
        graphs(
          r: EditRequest,
          batch: number,
        ): Record<string, { graph: Graph; outputs: Record<string, Tensor> }>;
      }
    ).graphs(patternRequest(16), 2);
    await (policy as { dispose?: () => Promise<void> }).dispose?.();
    const worst = await webgpuMatchesCpu(graphs, 1e-4);
    console.log(
      `tiny graphs, webgpu vs cpu, ${worst.length} outputs; worst: ${worst.slice(0, 3).join("; ")}`,
    );
  }, 300_000);

  it("edit --device webgpu writes the image --device cpu writes", async () => {
    const images = [];
    for (const device of ["cpu", "webgpu"]) {
      const out = join(tmp, `edit-${device}.png`);
      const r = await run([
        "edit",
        "--adapter",
        "tiny",
        "--image",
        source,
        "--instruction",
        "remove the red circle",
        "--device",
        device,
        "--out",
        out,
      ]);
      expect(r.code, r.err).toBe(0);
      images.push(await decodeImage(readFileSync(out)));
    }
    const [cpu, gpu] = images;
    expect([gpu!.width, gpu!.height]).toEqual([cpu!.width, cpu!.height]);
    let worst = 0;
    for (let i = 0; i < cpu!.data.length; i++)
      worst = Math.max(worst, Math.abs(gpu!.data[i]! - cpu!.data[i]!));
    console.log(`edit, webgpu vs cpu: max pixel difference ${worst} (8-bit levels)`);
    expect(worst).toBeLessThanOrEqual(1);
  }, 300_000);

  it("train --steps 2 --device webgpu: the metrics and the LoRA of --device cpu", async () => {
    const config = join(tmp, "small.json");
    // 8 rollouts a step, no group filtering (so every step trains), the shapes judge.
    writeFileSync(
      config,
      JSON.stringify({
        promptsPerBatch: 2,
        groupSize: 4,
        rolloutBatches: 1,
        trainBatchSize: 2,
        filter: { enabled: false },
      }),
    );
    type Metrics = {
      step: number;
      rewardMean: number;
      loss: number;
      gradNorm: number;
      trainedSamples: number;
      lr: number;
    };
    const runs: { metrics: Metrics[]; lora: Map<string, Float32Array> }[] = [];
    for (const device of ["cpu", "webgpu"]) {
      const out = join(tmp, `train-${device}`);
      const r = await run([
        "train",
        "--steps",
        "2",
        "--no-bench",
        "--device",
        device,
        "--config",
        config,
        "--out",
        out,
      ]);
      expect(r.code, r.err).toBe(0);
      // On webgpu the training state stays on the device (the default there); on cpu the trainer holds it.
      const resident = /training state .* stays on webgpu between steps/;
      if (device === "webgpu") expect(`${r.out}\n${r.err}`).toMatch(resident);
      else expect(`${r.out}\n${r.err}`).not.toMatch(/stays on/);
      const metrics = readFileSync(join(out, "metrics.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Metrics);
      const file = await openSafetensors(join(out, "lora", "adapter_model.safetensors"));
      const lora = new Map<string, Float32Array>();
      for (const name of file.names()) lora.set(name, (await file.read(name)) as Float32Array);
      runs.push({ metrics, lora });
    }
    const [cpu, gpu] = runs;
    expect(gpu!.metrics.map((m) => m.step)).toEqual([1, 2]);
    const lines: string[] = [];
    for (const [i, want] of cpu!.metrics.entries()) {
      const got = gpu!.metrics[i]!;
      expect(got.trainedSamples, "every rollout trains").toBe(want.trainedSamples);
      expect(want.trainedSamples).toBeGreaterThan(0);
      for (const key of ["rewardMean", "loss", "gradNorm"] as const) {
        const rel = Math.abs(got[key] - want[key]) / Math.abs(want[key]);
        lines.push(`step ${want.step} ${key} ${rel.toExponential(2)}`);
        expect(rel, `step ${want.step} ${key}: webgpu ${got[key]}, cpu ${want[key]}`).toBeLessThanOrEqual(
          1e-4,
        );
      }
    }
    let n = 0;
    let far = 0;
    let worst = 0;
    for (const [name, want] of cpu!.lora) {
      const got = gpu!.lora.get(name)!;
      expect(got, name).toBeDefined();
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(got[i]! - want[i]!);
        n++;
        if (d > 1e-5) far++;
        worst = Math.max(worst, d);
      }
    }
    console.log(
      `train, webgpu vs cpu: relative differences ${lines.join(", ")}; LoRA: ${far} of ${n} elements differ by more than 1e-5, max ${worst.toExponential(2)}`,
    );
    expect(far / n).toBeLessThanOrEqual(0.005);
    // AdamW moves an element about lr per step at most, so two runs part by at most 2 lr a step.
    expect(worst).toBeLessThanOrEqual(cpu!.metrics.reduce((s, m) => s + 2 * m.lr, 0));
  }, 600_000);
});
