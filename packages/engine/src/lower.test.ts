import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { Graph, GraphError } from "./graph.js";
import { evaluate } from "./interpret.js";
import { encodeData, IR_VERSION, lower } from "./lower.js";
import * as nn from "./nn.js";
import * as ops from "./ops.js";
import { Runtime } from "./runtime.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

describe("lower", () => {
  test("prunes nodes and inputs the outputs do not need", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    const z = g.input("z", "float32", [2]);
    const y = ops.exp(x);
    ops.log(ops.add(y, z)); // dead
    const m = lower(g, { outputs: { y } });
    expect(m.nodeCount).toBe(1);
    expect(m.inputs.map((i) => i.name)).toEqual(["x"]);
    expect(m.unusedInputs).toEqual(["z"]);
    expect(text(m.bytes)).not.toContain("Log");
  });

  test("node names carry the module scope; private attributes are dropped", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    const y = g.scope("blocks.0", () => g.scope("attn", () => ops.stopGradient(ops.neg(x))));
    const m = lower(g, { outputs: { y } });
    expect(text(m.bytes)).toContain("blocks.0/attn/Neg_0");
    expect(text(m.bytes)).not.toContain("_stop_gradient");
    expect(m.bytes[0]).toBe(0x08); // field 1 (ir_version), varint
    expect(m.bytes[1]).toBe(IR_VERSION);
  });

  test("an output name that is already an input name is refused", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    expect(() => lower(g, { outputs: { x: ops.neg(x) } })).toThrow(GraphError);
    expect(() => lower(g, { outputs: {} })).toThrow(/no outputs/);
  });

  test("encodeData converts numbers to the declared dtype", () => {
    expect([...encodeData(Float32Array.of(1.5), "float64")]).toEqual([
      ...new Uint8Array(Float64Array.of(1.5).buffer),
    ]);
    expect([...encodeData(Float32Array.of(-2), "int64")]).toEqual([
      ...new Uint8Array(BigInt64Array.of(-2n).buffer),
    ]);
    expect([...encodeData(Float32Array.of(1), "float16")]).toEqual([0x00, 0x3c]);
    expect([...encodeData(Float32Array.of(1), "bfloat16")]).toEqual([0x80, 0x3f]);
    expect([...encodeData(Float32Array.of(0, 3), "bool")]).toEqual([0, 1]);
  });

  test("external data: the folder is the common ancestor of the files and of their symlink targets", () => {
    const root = mkdtempSync(path.join(tmpdir(), "engine-lower-"));
    dirs.push(root);
    mkdirSync(path.join(root, "repo", "blobs"), { recursive: true });
    mkdirSync(path.join(root, "repo", "snapshots", "r1", "unet"), { recursive: true });
    writeFileSync(path.join(root, "repo", "blobs", "b1"), new Uint8Array(64));
    const link = path.join(root, "repo", "snapshots", "r1", "unet", "w.safetensors");
    symlinkSync("../../../blobs/b1", link);
    const g = new Graph();
    const w = g.initializer("w", "float32", [4], { path: link, offset: 16, length: 16 });
    const m = lower(g, { outputs: { y: ops.neg(w) } });
    expect(m.externalFolder).toBe(path.join(root, "repo"));
    expect(text(m.bytes)).toContain("snapshots/r1/unet/w.safetensors");
    expect(m.externalBytes).toBe(16);
    expect(m.externalNonFloat32Bytes).toBe(0);
  });

  test("frozen [out,in] weights feed Gemm(transB) or MatMul directly, never a foldable Transpose", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 4]);
    const w = g.initializer("w", "bfloat16", [5, 4], new Uint16Array(20));
    const wf = ops.cast(w, "float32");
    const wt = ops.transpose(wf, [1, 0]);
    const y = ops.matmul(x, wt); // as nn.linear builds it
    const dy = g.input("dy", "float32", [2, 3, 5]);
    const dx = ops.matmul(dy, ops.transpose(wt, [1, 0])); // as a backward pass builds it
    const m = lower(g, { outputs: { y, dx } });
    const body = text(m.bytes);
    expect(body).toContain("Gemm");
    expect(body).toContain("Cast");
    expect(body).not.toContain("Transpose");
    // A transposed activation (not a weight) keeps its Transpose.
    const a = g.input("a", "float32", [4, 5]);
    expect(
      text(
        lower(g, { outputs: { z: ops.matmul(x, ops.transpose(ops.transpose(a, [1, 0]), [1, 0])) } }).bytes,
      ),
    ).toContain("Transpose");
  });

  test("a linear layer's bias goes into its Gemm unless the product is read elsewhere; values unchanged", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2, 3, 4]);
    const w = g.initializer(
      "w",
      "float32",
      [5, 4],
      Float32Array.from({ length: 20 }, (_, i) => Math.sin(i)),
    );
    const b = g.initializer("b", "float32", [5], Float32Array.of(0.5, -1, 2, 0.25, -3));
    const y = nn.linear(x, w, b);
    const m = lower(g, { outputs: { y } });
    expect(m.nodeCount).toBe(3); // Reshape, Gemm(x, w, b), Reshape
    expect(text(m.bytes)).not.toContain("Add");
    // The product without the bias is also an output: the Add stays.
    const product = y.producer!.inputs[0]!;
    const kept = lower(g, { outputs: { y, product } });
    expect(text(kept.bytes)).toContain("Add");
    const rt = new Runtime();
    try {
      const xv = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i * 0.3));
      const s = await rt.compile(g, { outputs: { y } });
      const out = (await s.run({ x: xv })).y!;
      const [ref] = evaluate(g, { x: xv }, [y]);
      for (let i = 0; i < out.length; i++) expect(Math.abs(Number(out[i]) - ref![i]!)).toBeLessThan(1e-5);
    } finally {
      await rt.close();
    }
  });
});
