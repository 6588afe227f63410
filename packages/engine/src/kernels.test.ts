import * as ort from "onnxruntime-node";
import { describe, expect, test } from "vitest";
import { Graph } from "./graph.js";
import {
  EXECUTION_PROVIDERS,
  hasKernel,
  KERNEL_TABLE,
  type KernelFloat,
  kernelDtype,
  summarizeUncovered,
  uncoveredNodes,
} from "./kernels.js";
import { lower } from "./lower.js";
import * as nn from "./nn.js";
import * as ops from "./ops.js";
import { Runtime } from "./runtime.js";
import { PROBES, probeModel } from "./test-kernel-probe.js";

const FLOATS: readonly KernelFloat[] = ["float32", "float16", "bfloat16"];

/** Whether onnxruntime-node's CPU provider opens the one-node model (a missing kernel fails at session creation). */
async function cpuOpens(op: string, dtype: KernelFloat): Promise<boolean> {
  try {
    const s = await ort.InferenceSession.create(probeModel(op, dtype).bytes, { logSeverityLevel: 4 });
    await s.release();
    return true;
  } catch (e) {
    const m = String(e);
    // A missing kernel, or a type the op's schema does not allow at opset 21 (Sin/Cos/Conv in bfloat16).
    if (m.includes("Could not find an implementation") || m.includes("Type Error")) return false;
    throw e;
  }
}

describe("kernel table", () => {
  test("every op the lowering emits has a row for every provider", () => {
    const missing = EXECUTION_PROVIDERS.flatMap((p) =>
      Object.keys(PROBES)
        .filter((op) => KERNEL_TABLE[p][op] === undefined)
        .map((op) => `${p}:${op}`),
    );
    expect(missing).toEqual([]);
  });

  test("the cpu rows are what onnxruntime-node's CPU provider opens", async () => {
    const wrong: string[] = [];
    for (const op of Object.keys(PROBES)) {
      for (const d of FLOATS) {
        const opens = await cpuOpens(op, d);
        if (opens !== hasKernel("cpu", op, d))
          wrong.push(`${op} ${d}: table ${!opens}, onnxruntime ${opens}`);
      }
    }
    expect(wrong).toEqual([]);
  }, 60_000);

  test("cuda lacks the bfloat16 kernels issue 16 lists, and has float32 for every op", () => {
    for (const op of [
      "Log",
      "Reciprocal",
      "Greater",
      "Less",
      "Equal",
      "ReduceMean",
      "ReduceMax",
      "ConvTranspose",
    ])
      expect(hasKernel("cuda", op, "bfloat16"), op).toBe(false);
    for (const op of Object.keys(PROBES)) expect(hasKernel("cuda", op, "float32"), op).toBe(true);
  });

  test("kernelDtype reads T: Where's second input, a comparison's input", () => {
    expect(
      kernelDtype({ name: "w", op: "Where", inputs: ["bool", "float16", "float16"], outputs: ["float16"] }),
    ).toBe("float16");
    expect(
      kernelDtype({ name: "g", op: "Greater", inputs: ["bfloat16", "bfloat16"], outputs: ["bool"] }),
    ).toBe("bfloat16");
    expect(
      kernelDtype({ name: "r", op: "Reshape", inputs: ["float16", "int64"], outputs: ["float16"] }),
    ).toBe("float16");
  });
});

/** A small bfloat16 block that uses ops CUDA lacks in bfloat16 (ReduceMean, Reciprocal, Log, Greater). */
function bf16Block(dtype: KernelFloat) {
  const g = new Graph("block");
  const x32 = g.input("x", "float32", [2, 8]);
  const w = g.initializer(
    "w",
    "float32",
    [8, 8],
    Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) / 4),
  );
  const x = ops.cast(x32, dtype);
  const h = nn.linear(x, ops.cast(w, dtype));
  const mean = ops.reduceMean(h, [1], true);
  const centred = ops.sub(h, mean);
  const inv = ops.reciprocal(ops.add(ops.reduceMean(ops.mul(centred, centred), [1], true), 1));
  const pos = ops.where(ops.greater(centred, 0), centred, ops.mul(centred, 0.5));
  const y = ops.add(ops.mul(pos, inv), ops.log(ops.add(ops.abs(h), 1)));
  return { g, y: ops.cast(y, "float32") };
}

describe("lower with a provider", () => {
  test("without a provider, a bfloat16 graph has nodes CUDA cannot run; with it, none", () => {
    const { g, y } = bf16Block("bfloat16");
    const plain = lower(g, { outputs: { y } });
    const before = summarizeUncovered(uncoveredNodes(plain.nodes, "cuda"));
    expect(before.join("\n")).toMatch(/ReduceMean bfloat16 ×2/);
    expect(before.join("\n")).toMatch(/Reciprocal bfloat16/);
    expect(before.join("\n")).toMatch(/Greater bfloat16/);
    expect(plain.float32Fallbacks).toEqual([]);
    const forCuda = lower(g, { outputs: { y }, provider: "cuda" });
    expect(uncoveredNodes(forCuda.nodes, "cuda")).toEqual([]);
    const moved = Object.fromEntries(forCuda.float32Fallbacks.map((f) => [`${f.op} ${f.dtype}`, f.count]));
    expect(moved).toEqual({
      "ReduceMean bfloat16": 2,
      "Reciprocal bfloat16": 1,
      "Greater bfloat16": 1,
      "Log bfloat16": 1,
    });
    // The ops CUDA has in bfloat16 stay bfloat16.
    const mm = forCuda.nodes.find((n) => n.op === "Gemm" || n.op === "MatMul")!;
    expect(mm.inputs[0]).toBe("bfloat16");
  });

  test("a float32 graph is unchanged for every provider", () => {
    const { g, y } = bf16Block("float32");
    const plain = lower(g, { outputs: { y } });
    for (const provider of EXECUTION_PROVIDERS) {
      const m = lower(g, { outputs: { y }, provider });
      expect(m.float32Fallbacks).toEqual([]);
      expect(Buffer.from(m.bytes).equals(Buffer.from(plain.bytes))).toBe(true);
    }
  });

  test("a bfloat16 graph lowered for cpu runs on onnxruntime's CPU provider and matches float32", async () => {
    const rt = new Runtime({ workers: 1 });
    try {
      const x = Float32Array.from({ length: 16 }, (_, i) => Math.cos(i * 0.7));
      const f32 = bf16Block("float32");
      const ref = await rt.open(lower(f32.g, { outputs: { y: f32.y } }));
      const want = (await ref.run({ x })).y as Float32Array;
      const bf = bf16Block("bfloat16");
      // As built, the CPU provider has no bfloat16 math: the session fails.
      await expect(rt.open(lower(bf.g, { outputs: { y: bf.y } }))).rejects.toThrow(/implementation/);
      const s = await rt.open(lower(bf.g, { outputs: { y: bf.y }, provider: "cpu" }));
      const got = (await s.run({ x })).y as Float32Array;
      // bfloat16 keeps 8 bits of mantissa: agreement to a few percent of the values' scale.
      const scale = Math.max(...want.map(Math.abs));
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(0.05 * scale);
    } finally {
      await rt.close();
    }
  });
});
