import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { PhasePlan } from "./commands/plan.js";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

/**
 * `edit-r1 plan` on the tiny adapter, and the plan checked against what onnxruntime really uses: a child process
 * opens the same training graph through the engine's runtime, runs it, and samples its RSS (the run happens in a
 * worker thread, so the main thread keeps sampling). The liveness walk is a lower bound of onnxruntime's working
 * set; measured on the 2-core CI machine, the training step at batch 16 took 2.8× its plan (arena chunks, the
 * worker's feed staging, two intra-op threads' buffers). The stated margin: plan ≤ measured ≤ 3.5 × plan + 64 MiB.
 */

const MiB = 2 ** 20;

async function planOf(args: string[]): Promise<PhasePlan[]> {
  const c = capture();
  expect(await main(["plan", "--adapter", "tiny", ...args, "--json"], c.io), c.err.join("\n")).toBe(0);
  return (JSON.parse(c.out.join("\n")) as { phases: PhasePlan[] }).phases;
}

const CHILD = `
import { adapter } from "TINY_URL";
import { lower, measurePeakRss } from "ENGINE_URL";
const B = Number(process.env.PLAN_BATCH);
const policy = await adapter.loadPolicy({});
const req = { key: "p", instruction: "remove the red circle", source: { width: 16, height: 16, data: new Uint8Array(768).fill(128) } };
const built = policy.graphs(req, B).training;
const lowered = lower(built.graph, { outputs: built.outputs });
const feeds = {};
for (const i of lowered.inputs) {
  const n = i.shape.reduce((a, b) => a * b, 1);
  feeds[i.name] = i.name === "t" ? new Float32Array(n).fill(0.5) : Float32Array.from({ length: n }, (_, k) => 0.1 * Math.sin(k));
}
process.stdout.write(JSON.stringify({ bytes: await measurePeakRss(lowered, feeds) }));
`;

/** Runs CHILD as a module file (the runtime's workers must not inherit --input-type=module). */
function measure(batch: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "plan-measure-"));
  const script = join(dir, "measure.mjs");
  writeFileSync(
    script,
    CHILD.replace("TINY_URL", import.meta.resolve("@edit-r1/adapter-tiny")).replace(
      "ENGINE_URL",
      import.meta.resolve("@edit-r1/engine"),
    ),
  );
  return new Promise<number>((resolve, reject) =>
    execFile(
      process.execPath,
      ["--expose-gc", script],
      { env: { ...process.env, PLAN_BATCH: String(batch) }, timeout: 120_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout).bytes),
    ),
  ).finally(() => rmSync(dir, { recursive: true, force: true }));
}

describe("edit-r1 plan", () => {
  it("prints weights, feeds and the activation peak per phase", async () => {
    const c = capture();
    expect(await main(["plan", "--adapter", "tiny", "--train"], c.io), c.err.join("\n")).toBe(0);
    const text = c.out.join("\n");
    expect(text).toMatch(/^plan: tiny at 16×16, batch 1, float32, device cpu$/m);
    expect(text).toMatch(/^ {2}rollout +weights .* activations peak .* = /m);
    expect(text).toMatch(/^ {2}training +weights .* activations peak .* = /m);
    expect(text).toMatch(/^peak: /m);
  });

  it("refuses a device or dtype the adapter does not run, as edit and train do", async () => {
    for (const [flag, value, message] of [
      ["--device", "tpu", /does not run on device "tpu"/],
      ["--dtype", "float16", /does not compute in float16/],
    ] as const) {
      const c = capture();
      expect(await main(["plan", "--adapter", "tiny", flag, value], c.io)).toBe(2);
      expect(c.err.join("\n")).toMatch(message);
    }
  });

  it("activations grow with the batch, weights do not; training needs more than a rollout step", async () => {
    const [r1, t1] = await planOf(["--train", "--batch", "1"]);
    const [r8, t8] = await planOf(["--train", "--batch", "8"]);
    expect(r8!.plan.weightBytes).toBe(r1!.plan.weightBytes);
    expect(r8!.plan.peakActivationBytes).toBeGreaterThan(4 * r1!.plan.peakActivationBytes);
    expect(t1!.plan.peakActivationBytes).toBeGreaterThan(r1!.plan.peakActivationBytes);
    expect(t8!.plan.totalBytes).toBeGreaterThan(t1!.plan.totalBytes);
  });

  it("the training step's plan bounds the RSS onnxruntime uses on CPU, within the stated margin", async () => {
    const batch = 16;
    const [, training] = await planOf(["--train", "--batch", String(batch)]);
    const planned = training!.plan.totalBytes;
    const measured = await measure(batch);
    const report = `planned ${(planned / MiB).toFixed(1)} MiB, measured ${(measured / MiB).toFixed(1)} MiB`;
    expect(measured, report).toBeGreaterThanOrEqual(planned);
    expect(measured, report).toBeLessThanOrEqual(3.5 * planned + 64 * MiB);
  }, 180_000);

  it("on webgpu the training state kept on the device is part of the run's resident memory", async () => {
    const json = async (device: string) => {
      const c = capture();
      const args = ["plan", "--adapter", "tiny", "--train", "--device", device, "--json"];
      expect(await main(args, c.io), c.err.join("\n")).toBe(0);
      return JSON.parse(c.out.join("\n")) as {
        residentBytes: number;
        training: { parameters: number; deviceStateBytes: number };
      };
    };
    const [cpu, gpu] = [await json("cpu"), await json("webgpu")];
    expect(cpu.training.deviceStateBytes).toBe(0);
    // θ, θ_old, EMA, m, v and the gradient sums, float32 each.
    expect(gpu.training.deviceStateBytes).toBe(6 * 4 * gpu.training.parameters);
    expect(gpu.residentBytes - cpu.residentBytes).toBe(gpu.training.deviceStateBytes);
  });

  it("refuses a bad --batch", async () => {
    const c = capture();
    expect(await main(["plan", "--adapter", "tiny", "--batch", "0"], c.io)).toBe(2);
    expect(c.err.join("\n")).toMatch(/--batch must be an integer ≥ 1/);
  });
});
