import { afterAll, describe, expect, it } from "vitest";
import { Graph } from "./graph.js";
import * as o from "./ops.js";
import { type Device, FeedError, Runtime, RuntimeError } from "./runtime.js";
import { webgpuForTests } from "./testing.js";

const WEBGPU = await webgpuForTests("device values on webgpu");
const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((r) => r.close()));
});

const N = 1000;
const start = () => Float32Array.from({ length: N }, (_, i) => Math.sin(i));
const gradient = (step: number) => Float32Array.from({ length: N }, (_, i) => Math.cos(i * (step + 1)));

/** w' = w − 0.1·g and the step's loss Σw'², the shape of an optimizer step whose state stays in the worker. */
function sgdStep(device: Device, runtime: Runtime, values: ReturnType<Runtime["values"]>) {
  const g = new Graph("sgd");
  const w = g.input("w", "float32", [N]);
  const grad = g.input("g", "float32", [N]);
  const next = o.sub(w, o.mul(grad, 0.1));
  const loss = o.reduceSum(o.mul(next, next), [0]);
  return runtime.compile(g, { outputs: { next, loss }, device, values, deviceOutputs: ["next"] });
}

/** The same steps on the host, rounded to float32 after each operation as onnxruntime does. */
function hostSteps(steps: number): Float32Array {
  const w = start();
  for (let s = 0; s < steps; s++) {
    const g = gradient(s);
    for (let i = 0; i < N; i++) w[i] = Math.fround(w[i]! - Math.fround(g[i]! * Math.fround(0.1)));
  }
  return w;
}

for (const device of ["cpu", ...(WEBGPU ? ["webgpu"] : [])] as Device[]) {
  describe(`device values on ${device}`, () => {
    it("keep a parameter in the worker across runs: only the gradient goes in and the loss comes out", async () => {
      const runtime = new Runtime();
      runtimes.push(runtime);
      const values = runtime.values();
      await values.set("w", "float32", [N], start());
      const session = await sgdStep(device, runtime, values);
      for (let s = 0; s < 5; s++) {
        const out = await session.run({ g: gradient(s) }, { values, from: { w: "w" }, to: { next: "w" } });
        expect(Object.keys(out)).toEqual(["loss"]);
      }
      // On WebGPU the parameter now lives in GPU memory, not in the worker's.
      expect(values.spec("w")).toMatchObject({ where: device === "webgpu" ? "device" : "host", device });
      const w = (await values.read("w")) as Float32Array;
      const want = hostSteps(5);
      // The CPU provider computes exactly the float32 host arithmetic; WebGPU may fuse a multiply-add.
      const tol = device === "cpu" ? 0 : 1e-6;
      let worst = 0;
      for (let i = 0; i < N; i++) worst = Math.max(worst, Math.abs(w[i]! - want[i]!));
      expect(worst).toBeLessThanOrEqual(tol);
      // Reading twice gives the same bits, and a read copies: changing it changes nothing held.
      const again = (await values.read("w")) as Float32Array;
      expect(Array.from(again)).toEqual(Array.from(w));
      w.fill(0);
      expect(Array.from((await values.read("w")) as Float32Array)).toEqual(Array.from(again));
      await values.dispose();
      await session.dispose();
    });

    it("upload puts a float value in GPU memory on webgpu (the worker's memory elsewhere), unchanged", async () => {
      const runtime = new Runtime();
      runtimes.push(runtime);
      const values = runtime.values();
      await values.upload("w", "float32", [N], start(), device);
      await values.upload("ids", "int64", [3], BigInt64Array.of(1n, 2n, 3n), device);
      expect(values.spec("w")!.where).toBe(device === "webgpu" ? "device" : "host");
      // Only float values move; others stay where onnxruntime uploads them per run.
      expect(values.spec("ids")!.where).toBe("host");
      expect(Array.from((await values.read("w")) as Float32Array)).toEqual(Array.from(start()));
      expect(Array.from((await values.read("ids")) as BigInt64Array)).toEqual([1n, 2n, 3n]);
      const session = await sgdStep(device, runtime, values);
      const out = await session.run({ g: gradient(0) }, { values, from: { w: "w" }, to: { next: "w" } });
      expect(out.loss).toBeDefined();
      await values.dispose();
    });

    it("are shared by the sessions opened with them", async () => {
      const runtime = new Runtime({ workers: 2 });
      runtimes.push(runtime);
      const values = runtime.values();
      await values.set("w", "float32", [N], start());
      const step = await sgdStep(device, runtime, values);
      const g = new Graph("double");
      const x = g.input("x", "float32", [N]);
      const double = await runtime.compile(g, {
        outputs: { y: o.mul(x, 2) },
        device,
        values,
        deviceOutputs: ["y"],
      });
      await step.run({ g: gradient(0) }, { values, from: { w: "w" }, to: { next: "w1" } });
      await double.run({}, { values, from: { x: "w1" }, to: { y: "w2" } });
      const w1 = (await values.read("w1")) as Float32Array;
      const w2 = (await values.read("w2")) as Float32Array;
      for (let i = 0; i < N; i++) expect(w2[i]).toBe(Math.fround(2 * w1[i]!));
      // The untouched source is still there.
      expect(Array.from((await values.read("w")) as Float32Array)).toEqual(Array.from(start()));
      await values.dispose();
      expect(values.names).toEqual([]);
    });
  });
}

describe("device values: bad use", () => {
  it("a run that fails in onnxruntime stores nothing: the values keep what they held", async () => {
    const runtime = new Runtime();
    runtimes.push(runtime);
    const values = runtime.values();
    await values.set("w", "float32", [4], Float32Array.of(1, 2, 3, 4));
    const g = new Graph("pick");
    const w = g.input("w", "float32", [4]);
    const at = g.input("at", "int64", [1]);
    const next = o.add(w, o.gather(w, at, 0));
    const session = await runtime.compile(g, { outputs: { next }, values, deviceOutputs: ["next"] });
    // Index 9 of 4 fails inside onnxruntime, after the run was sent to the worker.
    await expect(
      session.run({ at: BigInt64Array.of(9n) }, { values, from: { w: "w" }, to: { next: "w" } }),
    ).rejects.toThrow(RuntimeError);
    expect(Array.from((await values.read("w")) as Float32Array)).toEqual([1, 2, 3, 4]);
    await session.run({ at: BigInt64Array.of(1n) }, { values, from: { w: "w" }, to: { next: "w" } });
    expect(Array.from((await values.read("w")) as Float32Array)).toEqual([3, 4, 5, 6]);
  });

  it("names the value, the input and what to do", async () => {
    const runtime = new Runtime({ workers: 2 });
    runtimes.push(runtime);
    const values = runtime.values();
    const other = runtime.values();
    await values.set("w", "float32", [4], new Float32Array(4));
    const g = new Graph("plus");
    const x = g.input("x", "float32", [3]);
    const session = await runtime.compile(g, { outputs: { y: o.add(x, 1) }, values });
    await expect(session.run({}, { values, from: { x: "nope" } })).rejects.toThrow(
      /no device value "nope"; held: w/,
    );
    await expect(session.run({}, { values, from: { x: "w" } })).rejects.toThrow(
      /input "x" is float32 \[3\], but device value "w" is float32 \[4\]/,
    );
    await expect(session.run({}, { from: { x: "w" } })).rejects.toThrow(/pass them as `values`/);
    if (other.host !== values.host)
      await expect(session.run({ x: new Float32Array(3) }, { values: other })).rejects.toThrow(
        /live on another worker/,
      );
    await expect(session.run({ x: new Float32Array(3) }, { values, to: { z: "z" } })).rejects.toThrow(
      FeedError,
    );
    await expect(values.read("nope")).rejects.toThrow(/no device value "nope"/);
    await expect(values.set("v", "float32", [2], new Float32Array(3))).rejects.toThrow(FeedError);
    await expect(
      runtime.compile(g, { outputs: { y: o.add(x, 2) }, values, deviceOutputs: ["q"] }),
    ).rejects.toThrow(/deviceOutputs names "q", which is not an output/);
  });
});
