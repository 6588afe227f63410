import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, test } from "vitest";
import { grad } from "./autodiff.js";
import { Graph, type Tensor } from "./graph.js";
import { hasKernel, type KernelFloat } from "./kernels.js";
import { type LoweredModel, lower } from "./lower.js";
import * as nn from "./nn.js";
import * as o from "./ops.js";
import { Runtime, RuntimeError, type TensorData } from "./runtime.js";
import { rng } from "./test-gradcheck.js";
import { PROBES, probeModel } from "./test-kernel-probe.js";
import { webgpuForTests } from "./testing.js";

/**
 * The WebGPU execution provider against the CPU provider, with CPU fallback disabled, so every node really ran
 * on WebGPU (on CI: Mesa's software Vulkan, lavapipe). Three parts:
 * - the kernel table's webgpu rows are what the provider opens;
 * - every ONNX op the lowering emits, alone, in float32 (and float16), matches the CPU;
 * - gradient graphs (forward + autodiff backward) whose nodes together cover every op the lowering emits match
 *   the CPU output by output.
 * Tolerances (float32): max |webgpu − cpu| ≤ 1e-5 · max(1, max |cpu|) per output for single ops and
 * ≤ 1e-4 · max |cpu| for whole gradient graphs (measured on lavapipe: ≤ 3e-7 and ≤ 1.2e-6); a wrong kernel is off
 * by O(1). float16 single ops: ≤ 4e-3 · max(1, max |cpu|) (half an fp16 ulp of rounding on either side, measured ≤ 1e-3).
 */

const WEBGPU = await webgpuForTests("the engine's WebGPU tests");

const rt = new Runtime({ workers: 1 });
afterAll(() => rt.close());

/** Worst |a − b| and the largest |b|, over float outputs; the count of mismatches over bool outputs. */
function compare(got: TensorData, want: TensorData): { diff: number; scale: number } {
  expect(got.constructor).toBe(want.constructor);
  expect(got.length).toBe(want.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const a = Number(got[i]);
    const b = Number(want[i]);
    expect(Number.isFinite(b), `cpu value ${i} is not finite`).toBe(true);
    diff = Math.max(diff, Number.isNaN(a) ? Number.POSITIVE_INFINITY : Math.abs(a - b));
    scale = Math.max(scale, Math.abs(b));
  }
  return { diff, scale };
}

/** Random feeds for a model's inputs: magnitudes in [0.25, 2], signed unless `positive`; bools at random. */
function feedsFor(model: LoweredModel, seed: number, positive: boolean): Record<string, TensorData> {
  const r = rng(seed);
  const feeds: Record<string, TensorData> = {};
  let first: Float32Array | undefined;
  for (const spec of model.inputs) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.dtype === "bool") {
      feeds[spec.name] = Uint8Array.from({ length: n }, () => (r() < 0.5 ? 1 : 0));
      continue;
    }
    const v = Float32Array.from({ length: n }, () => (positive || r() < 0.5 ? 1 : -1) * (0.25 + 1.75 * r()));
    // A second operand of the same size repeats some of the first's values: ties for Max/Min, true for Equal.
    if (first && first.length === n) for (let i = 0; i < n; i += 3) v[i] = first[i]!;
    first ??= v;
    feeds[spec.name] = v;
  }
  return feeds;
}

/** The worst relative difference seen per part, printed at the end (the figures the doc comment quotes). */
const worst: Record<string, { rel: number; abs: number; where: string }> = {};
function record(part: string, where: string, diff: number, scale: number): number {
  const rel = diff / Math.max(scale, Number.MIN_VALUE);
  const w = (worst[part] ??= { rel: 0, abs: 0, where: "" });
  if (rel > w.rel) Object.assign(w, { rel, where });
  w.abs = Math.max(w.abs, diff);
  return rel;
}
afterAll(() => {
  for (const [part, w] of Object.entries(worst))
    console.log(
      `webgpu vs cpu, ${part}: max abs ${w.abs.toExponential(2)}, max rel ${w.rel.toExponential(2)} (${w.where})`,
    );
});

const POSITIVE_OPS = new Set(["Log", "Sqrt", "Pow"]);

describe.runIf(WEBGPU)("WebGPU provider vs the CPU provider", () => {
  test("the kernel table's webgpu rows are what onnxruntime-node's WebGPU provider opens (CPU fallback disabled)", async () => {
    const wrong: string[] = [];
    for (const op of Object.keys(PROBES)) {
      for (const d of ["float32", "float16"] as const) {
        let opens = true;
        try {
          const s = await ort.InferenceSession.create(probeModel(op, d).bytes, {
            executionProviders: ["webgpu"],
            logSeverityLevel: 4,
            extra: { session: { disable_cpu_ep_fallback: "1" } },
          });
          await s.release();
        } catch (e) {
          if (
            !/fallback to CPU EP has been explicitly disabled|Could not find an implementation/.test(
              String(e),
            )
          )
            throw e;
          opens = false;
        }
        if (opens !== hasKernel("webgpu", op, d))
          wrong.push(`${op} ${d}: table ${!opens}, onnxruntime ${opens}`);
      }
    }
    expect(wrong).toEqual([]);
  }, 120_000);

  for (const [dtype, tol] of [
    ["float32", 1e-5],
    ["float16", 4e-3],
  ] as const satisfies readonly (readonly [KernelFloat, number])[]) {
    test(`every op the lowering emits, alone in ${dtype}, matches the CPU`, async () => {
      const bad: string[] = [];
      for (const op of Object.keys(PROBES)) {
        const model = probeModel(op, dtype);
        const feeds = feedsFor(model, op.length * 7919 + op.charCodeAt(0), POSITIVE_OPS.has(op));
        const cpu = await rt.open(model, { device: "cpu" });
        const gpu = await rt.open(model, { device: "webgpu", cpuFallback: false });
        try {
          const want = await cpu.run(feeds);
          const got = await gpu.run(feeds);
          const { diff, scale } = compare(got.y!, want.y!);
          if (want.y instanceof Uint8Array) {
            if (diff !== 0) bad.push(`${op}: boolean outputs differ`);
          } else {
            const rel = record(`single ops, ${dtype}`, op, diff, Math.max(1, scale));
            if (!(rel <= tol)) bad.push(`${op}: max |webgpu − cpu| = ${diff} at scale ${scale}`);
          }
        } finally {
          await cpu.dispose();
          await gpu.dispose();
        }
      }
      expect(bad).toEqual([]);
    }, 120_000);
  }

  /** Forward + backward graphs; the ONNX ops their lowered models hold, for the coverage check at the end. */
  const covered = new Set<string>();

  async function crossCheck(
    name: string,
    specs: Record<string, number[]>,
    build: (x: Record<string, Tensor>, g: Graph) => Tensor,
  ): Promise<void> {
    const g = new Graph(name.replace(/\W+/g, "_"));
    const x: Record<string, Tensor> = {};
    for (const [k, shape] of Object.entries(specs)) x[k] = g.input(k, "float32", shape);
    const loss = build(x, g);
    const names = Object.keys(specs);
    const grads = grad(
      loss,
      names.map((k) => x[k]!),
    );
    const outputs: Record<string, Tensor> = { loss };
    names.forEach((k, i) => {
      outputs[`d_${k}`] = grads[i]!;
    });
    const cpu = await rt.compile(g, { outputs, device: "cpu" });
    const gpu = await rt.compile(g, { outputs, device: "webgpu", cpuFallback: false });
    try {
      const r = rng(name.length);
      const feeds: Record<string, Float32Array> = {};
      for (const spec of cpu.inputs)
        feeds[spec.name] = Float32Array.from(
          { length: spec.shape.reduce((a, b) => a * b, 1) },
          () => 2 * r() - 1,
        );
      const want = await cpu.run(feeds);
      const got = await gpu.run(feeds);
      for (const key of Object.keys(outputs)) {
        const { diff, scale } = compare(got[key]!, want[key]!);
        expect(scale, `${name}: ${key} is all zeros on the CPU`).toBeGreaterThan(0);
        const rel = record("gradient graphs", `${name}: ${key}`, diff, scale);
        expect(rel, `${name}: ${key}, max |webgpu − cpu| = ${diff} at scale ${scale}`).toBeLessThanOrEqual(
          1e-4,
        );
      }
    } finally {
      await cpu.dispose();
      await gpu.dispose();
    }
    // The ops of the model the CPU session holds (the lowering for webgpu is the same in float32).
    const lowered = lower(g, { outputs, provider: "webgpu" });
    for (const n of lowered.nodes) covered.add(n.op);
  }

  test("gradient graphs: every unary and binary elementwise op", async () => {
    await crossCheck("elementwise", { x: [2, 5], y: [2, 5], w: [2, 5] }, ({ x, y, w }) => {
      const pos = o.add(o.abs(y!), 0.5);
      const terms = [
        o.neg(o.exp(x!)),
        o.erf(x!),
        o.sqrt(pos),
        o.tanh(x!),
        o.sigmoid(x!),
        o.relu(x!),
        o.log(pos),
        o.reciprocal(pos),
        o.sin(x!),
        o.cos(y!),
        o.gelu(x!),
        o.gelu(y!, "tanh"),
        o.pow(pos, x!),
        o.div(x!, pos),
        o.maximum(x!, y!),
        o.minimum(x!, y!),
        o.sub(x!, o.mul(y!, y!)),
      ];
      return o.reduceSum(
        o.mul(
          terms.reduce((a, b) => o.add(a, b)),
          w!,
        ),
      );
    });
  });

  test("gradient graphs: a pre-LN transformer block (layer norm, attention, GELU, LoRA linear)", async () => {
    const [L, D, H, F, R] = [4, 8, 2, 16, 2];
    await crossCheck(
      "transformer",
      {
        x: [1, L, D],
        wq: [D, D],
        wk: [D, D],
        wv: [D, D],
        wo: [D, D],
        b1: [F],
        w2: [D, F],
        a: [R, D],
        b: [D, R],
        ln: [D],
      },
      ({ x, wq, wk, wv, wo, b1, w2, a, b, ln }, g) => {
        // A frozen weight, as in the real models: an initializer, whose linear layer lowers to Gemm with the bias.
        const r = rng(5);
        const w1 = g.initializer(
          "w1",
          "float32",
          [F, D],
          Float32Array.from({ length: F * D }, () => r() - 0.5),
        );
        const heads = (t: Tensor) => o.transpose(o.reshape(t, [1, L, H, D / H]), [0, 2, 1, 3]);
        const h = nn.layerNorm(x!, { weight: ln! });
        const att = nn.scaledDotProductAttention(
          heads(nn.loraLinear(h, wq!, undefined, { A: a!, B: b!, scale: 0.5 })),
          heads(nn.linear(h, wk!)),
          heads(nn.linear(h, wv!)),
        );
        const merged = o.reshape(o.transpose(att, [0, 2, 1, 3]), [1, L, D]);
        const x1 = o.add(x!, nn.linear(merged, wo!));
        const y = o.add(x1, nn.linear(nn.gelu(nn.linear(nn.rmsNorm(x1), w1, b1!)), w2!));
        return o.reduceMean(o.mul(y, y));
      },
    );
  });

  test("gradient graphs: convolutions, group norm, SiLU, nearest upsampling", async () => {
    await crossCheck(
      "vae",
      { x: [1, 4, 5, 5], w: [4, 4, 3, 3], b: [4], wt: [4, 2, 4, 4] },
      ({ x, w, b, wt }) => {
        const h = nn.silu(nn.groupNorm(o.conv2d(x!, w!, b!, { padding: 1 }), 2));
        const up = o.convTranspose2d(nn.upsampleNearest(h), wt!, undefined, { stride: 2, padding: 1 });
        return o.reduceSum(o.mul(up, up));
      },
    );
  });

  test("gradient graphs: gather, slice, concat, expand, reductions, comparisons, where, softmax, stop-gradient", async () => {
    await crossCheck("indexing", { e: [7, 5], s: [5], c: [1, 5] }, ({ e, s, c }, g) => {
      const tok = o.gather(e!, g.constant([3, 1, 3, 6, 0], [5], "int64"), 0);
      const picked = o.slice(tok, [1], [5], [1], [2]);
      const m = o.reduceMax(picked, [0], true);
      const wide = o.concat([tok, o.expand(c!, [5, 5])], 0);
      const gate = o.where(o.less(s!, 0), o.softmax(o.mul(tok, s!)), o.maximum(tok, 0.1));
      const eq = o.where(o.equal(o.stopGradient(tok), o.stopGradient(tok)), gate, 0);
      const frozen = o.mul(o.stopGradient(s!), s!);
      return o.add(
        o.add(o.reduceSum(o.mul(eq, eq)), o.reduceSum(o.exp(m))),
        o.add(o.reduceMean(o.mul(wide, wide)), o.reduceSum(frozen)),
      );
    });
  });

  test("together, the gradient graphs hold every op the lowering emits", () => {
    const missing = Object.keys(PROBES).filter((op) => !covered.has(op));
    expect(missing).toEqual([]);
  });
});

describe.runIf(WEBGPU)("WebGPU sessions", () => {
  test("with cpuFallback: false, a node WebGPU has no kernel for fails the session, named from the kernel table", async () => {
    const g = new Graph("f64");
    const x = g.input("x", "float64", [3]);
    const y = o.add(o.mul(x, x), 1);
    // With fallback (the default) the float64 nodes run on the CPU provider.
    const s = await rt.compile(g, { outputs: { y }, device: "webgpu" });
    expect(Array.from((await s.run({ x: Float64Array.from([1, 2, 3]) })).y as Float64Array)).toEqual([
      2, 5, 10,
    ]);
    await s.dispose();
    const err = await rt.compile(g, { outputs: { y }, device: "webgpu", cpuFallback: false }).catch((e) => e);
    expect(err).toBeInstanceOf(RuntimeError);
    expect(err.message).toMatch(
      /Nodes without a webgpu kernel \(kernel table\): .*Mul float64 ×1 .*Add float64 ×1/,
    );
    expect(err.message).toMatch(/cpuFallback: true/);
  });
});

/** Opens a webgpu session in a child process whose Vulkan loader finds no driver (the engine as built in dist/). */
describe("device webgpu without a Vulkan driver", () => {
  const dist = fileURLToPath(new URL("../dist/index.js", import.meta.url));
  test("fails with WebGpuUnavailableError naming scripts/ensure-vulkan.sh and the apt packages", async () => {
    expect(existsSync(dist), `${dist} is missing: build the engine first (pnpm build)`).toBe(true);
    const child = `
      const { Graph, ops, compile, closeDefaultRuntime } = await import(${JSON.stringify(dist)});
      const g = new Graph("p");
      const x = g.input("x", "float32", [3]);
      try {
        await compile(g, { outputs: { y: ops.add(x, x) }, device: "webgpu" });
        console.log(JSON.stringify({ opened: true }));
      } catch (e) {
        console.log(JSON.stringify({ name: e.name, message: e.message }));
      } finally {
        await closeDefaultRuntime();
      }`;
    // A module file, not `--input-type=module -e`: worker threads inherit that flag and the runtime's eval'd
    // worker source is CommonJS.
    const dir = mkdtempSync(join(tmpdir(), "webgpu-missing-"));
    const script = join(dir, "open.mjs");
    writeFileSync(script, child);
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [script],
        {
          timeout: 60_000,
          env: {
            ...process.env,
            VK_ICD_FILENAMES: "/nonexistent/icd.json",
            VK_DRIVER_FILES: "/nonexistent/icd.json",
          },
        },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
      ),
    ).finally(() => rmSync(dir, { recursive: true, force: true }));
    const r = JSON.parse(out.trim().split("\n").pop()!) as {
      name?: string;
      message?: string;
      opened?: boolean;
    };
    expect(r.opened).toBeUndefined();
    expect(r.name, r.message).toBe("WebGpuUnavailableError");
    expect(r.message).toMatch(/device 'webgpu' needs a Vulkan loader and driver/);
    expect(r.message).toMatch(/No supported adapters|WebGPU adapter/);
    expect(r.message).toContain("scripts/ensure-vulkan.sh");
    expect(r.message).toContain("libvulkan1 and mesa-vulkan-drivers");
  });
});
