import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { Graph } from "./graph.js";
import { evaluate } from "./interpret.js";
import * as ops from "./ops.js";
import {
  CudaUnavailableError,
  closeDefaultRuntime,
  compile,
  FeedError,
  Runtime,
  RuntimeError,
  type TensorData,
} from "./runtime.js";
import {
  float32ToBfloat16Bits as toBfloat16Bits,
  float32ToFloat16Bits as toFloat16Bits,
} from "./safetensors-convert.js";

const rt = new Runtime({ workers: 2 });
const dirs: string[] = [];
afterAll(async () => {
  await rt.close();
  await closeDefaultRuntime();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function seq(n: number, scale = 0.1, shift = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + shift) * scale * (1 + (i % 5)));
}

function expectClose(actual: TensorData | undefined, expected: ArrayLike<number>, tol: number) {
  expect(actual).toBeInstanceOf(Float32Array);
  const a = actual as Float32Array;
  expect(a.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - expected[i]!));
  expect(worst).toBeLessThanOrEqual(tol);
}

/** A minimal safetensors file written by hand (header + raw little-endian data). */
function writeSafetensors(
  file: string,
  tensors: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }>,
) {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let json = JSON.stringify(header);
  // An odd header length puts the data at offsets that are not multiples of 4, as real files can.
  if (json.length % 2 === 0) json += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const parts = [len, Buffer.from(json), ...Object.values(tensors).map((t) => Buffer.from(t.bytes))];
  writeFileSync(file, Buffer.concat(parts));
  const offsets: Record<string, { offset: number; length: number }> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const d = (header[name] as { data_offsets: [number, number] }).data_offsets;
    offsets[name] = { offset: 8 + json.length + d[0], length: t.bytes.length };
  }
  return offsets;
}

const u8 = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe("compile and run", () => {
  test("matches the reference interpreter", async () => {
    const g = new Graph("mlp");
    const x = g.input("x", "float32", [3, 4]);
    const w = g.initializer("w", "float32", [4, 5], seq(20));
    const b = g.constant(seq(5, 1, 3), [5]);
    const y = ops.tanh(ops.add(ops.matmul(x, w), b));
    const s = ops.reduceSum(ops.mul(y, y), [1]);
    const session = await compile(g, { outputs: { y, s }, runtime: rt });
    const xv = seq(12, 1, 0.5);
    const out = await session.run({ x: xv });
    const [ry, rs] = evaluate(g, { x: xv }, [y, s]);
    expectClose(out.y!, ry!, 1e-6);
    expectClose(out.s!, rs!, 1e-5);
    expect(session.outputs.map((o) => o.name)).toEqual(["y", "s"]);
    await session.dispose();
  });

  test("outputs that are inputs, initializers or the same tensor twice", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    const w = g.initializer("w", "float32", [2], Float32Array.of(5, 6));
    const y = ops.neg(x);
    const session = await compile(g, { outputs: { a: x, b: w, c: y, d: y }, runtime: rt });
    const out = await session.run({ x: Float32Array.of(1, 2) });
    expect([...out.a!]).toEqual([1, 2]);
    expect([...out.b!]).toEqual([5, 6]);
    expect([...out.c!]).toEqual([-1, -2]);
    expect([...out.d!]).toEqual([-1, -2]);
    await session.dispose();
  });

  test("float16, int64 and bool I/O", async () => {
    const g = new Graph();
    const h = g.input("h", "float16", [3]);
    const i = g.input("i", "int64", [3]);
    const h2 = ops.add(h, 1);
    const i2 = ops.mul(i, 3);
    const gt = ops.greater(ops.cast(i, "float32"), 1);
    const session = await compile(g, { outputs: { h2, i2, gt }, runtime: rt });
    const out = await session.run({
      h: Uint16Array.from([0.5, -2, 3], toFloat16Bits),
      i: BigInt64Array.of(1n, 2n, -7n),
    });
    expect([...out.h2!]).toEqual([1.5, -1, 4].map(toFloat16Bits));
    expect([...out.i2!]).toEqual([3n, 6n, -21n]);
    expect(out.gt).toBeInstanceOf(Uint8Array);
    expect([...out.gt!]).toEqual([0, 1, 0]);
    await session.dispose();
  });

  test("constants are converted to the tensor's dtype (float16 scalar from a number)", async () => {
    const g = new Graph();
    const h = g.input("h", "float16", [1]);
    const session = await compile(g, { outputs: { y: ops.mul(h, 0.1) }, runtime: rt });
    const out = await session.run({ h: Uint16Array.of(toFloat16Bits(10)) });
    expect(out.y![0]).toBe(toFloat16Bits(1));
    await session.dispose();
  });

  test("bfloat16 inputs are refused with a hint to cast inside the graph", async () => {
    const g = new Graph();
    const x = g.input("x", "bfloat16", [2]);
    await expect(compile(g, { outputs: { y: ops.cast(x, "float32") }, runtime: rt })).rejects.toThrow(
      /bfloat16.*cast it to float32/,
    );
  });
});

describe("feeds", () => {
  test("missing, unknown, mistyped and mis-sized feeds are typed errors; unused inputs are ignored", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    g.input("unused", "float32", [7]);
    const session = await compile(g, { outputs: { y: ops.exp(x) }, runtime: rt });
    expect(session.inputs.map((i) => i.name)).toEqual(["x"]);
    await expect(session.run({})).rejects.toThrow(FeedError);
    await expect(session.run({})).rejects.toThrow(/missing feed "x"/);
    await expect(session.run({ x: Float32Array.of(1, 2), z: Float32Array.of(1) })).rejects.toThrow(
      /unknown feed "z"/,
    );
    await expect(session.run({ x: Float64Array.of(1, 2) })).rejects.toThrow(
      /Float64Array.*pass a Float32Array/,
    );
    await expect(session.run({ x: Float32Array.of(1, 2, 3) })).rejects.toThrow(/3 elements.*needs 2/);
    const out = await session.run({ x: Float32Array.of(0, 1), unused: new Float32Array(7) });
    expectClose(out.y!, [1, Math.E], 1e-6);
    await session.dispose();
  });

  test("copy by default, move with { transfer: true }; views into larger buffers are copied", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    const session = await compile(g, { outputs: { y: ops.add(x, 1) }, runtime: rt });
    const a = Float32Array.of(1, 2);
    await session.run({ x: a });
    expect(a.length).toBe(2);
    const big = Float32Array.of(0, 1, 2, 3);
    const view = big.subarray(1, 3);
    expect([...(await session.run({ x: view }, { transfer: true })).y!]).toEqual([2, 3]);
    expect(big.length).toBe(4);
    const b = Float32Array.of(5, 6);
    expect([...(await session.run({ x: b }, { transfer: true })).y!]).toEqual([6, 7]);
    expect(b.length).toBe(0);
    await session.dispose();
  });
});

describe("session cache and pool", () => {
  test("the same graph and options share one session; dispose releases it after the last handle", async () => {
    const local = new Runtime();
    const build = () => {
      const g = new Graph("same");
      const x = g.input("x", "float32", [2]);
      return { g, y: ops.sqrt(x) };
    };
    const a = build();
    const b = build();
    const s1 = await local.compile(a.g, { outputs: { y: a.y } });
    const s2 = await local.compile(b.g, { outputs: { y: b.y } });
    const s3 = await local.compile(b.g, { outputs: { y: b.y }, threads: 1 });
    expect(s1.key).toBe(s2.key);
    expect(s3.key).not.toBe(s1.key);
    expect(local.sessionCount).toBe(2);
    await s1.dispose();
    await s1.dispose();
    expect(local.sessionCount).toBe(2);
    expectClose((await s2.run({ x: Float32Array.of(4, 9) })).y!, [2, 3], 0);
    await s2.dispose();
    expect(local.sessionCount).toBe(1);
    await expect(s2.run({ x: Float32Array.of(4, 9) })).rejects.toThrow(/disposed/);
    await local.close();
    await expect(s3.run({ x: Float32Array.of(4, 9) })).rejects.toThrow(RuntimeError);
    await expect(local.compile(b.g, { outputs: { y: b.y } })).rejects.toThrow(/closed/);
  });

  test("thread pools do not spin by default; spinning: true is a different session that also runs", async () => {
    const local = new Runtime();
    const g = new Graph("spin");
    const x = g.input("x", "float32", [2]);
    const y = ops.sqrt(x);
    const quiet = await local.compile(g, { outputs: { y } });
    const spinning = await local.compile(g, { outputs: { y }, spinning: true });
    expect(spinning.key).not.toBe(quiet.key);
    expect(await local.compile(g, { outputs: { y }, spinning: false }).then((s) => s.key)).toBe(quiet.key);
    for (const s of [quiet, spinning]) expectClose((await s.run({ x: Float32Array.of(4, 9) })).y!, [2, 3], 0);
    await local.close();
  });

  test("concurrent runs on sessions spread over two workers", async () => {
    const sessions = await Promise.all(
      [1, 2, 3, 4].map((k) => {
        const g = new Graph(`scale${k}`);
        const x = g.input("x", "float32", [64, 64]);
        return compile(g, { outputs: { y: ops.mul(ops.matmul(x, x), k) }, runtime: rt });
      }),
    );
    const x = seq(64 * 64, 0.05);
    const runs = await Promise.all(sessions.flatMap((s) => [s.run({ x }), s.run({ x })]));
    const g = new Graph();
    const xi = g.input("x", "float32", [64, 64]);
    const [ref] = evaluate(g, { x }, [ops.matmul(xi, xi)]);
    runs.forEach((r, i) => {
      const k = Math.floor(i / 2) + 1;
      expectClose(
        r.y!,
        Float64Array.from(ref!, (v) => v * k),
        1e-4,
      );
    });
    await Promise.all(sessions.map((s) => s.dispose()));
  });

  test("device cuda without the CUDA provider fails with install instructions", async () => {
    const g = new Graph();
    const x = g.input("x", "float32", [2]);
    let session: Awaited<ReturnType<typeof compile>> | undefined;
    try {
      session = await compile(g, { outputs: { y: ops.neg(x) }, device: "cuda", runtime: rt });
    } catch (e) {
      expect(e).toBeInstanceOf(CudaUnavailableError);
      expect(String(e)).toContain("ONNXRUNTIME_NODE_INSTALL=cuda12 pnpm rebuild onnxruntime-node");
      // onnxruntime-node ≥ 1.27 downloads a CUDA 13 build (not the CUDA 12 its manifest's name suggests).
      expect(String(e)).toMatch(/CUDA 13\.x and cuDNN 9\.x/);
      return;
    }
    // A machine with CUDA: the session must then compute correctly.
    expect([...(await session.run({ x: Float32Array.of(1, 2) })).y!]).toEqual([-1, -2]);
    await session.dispose();
  });
});

describe("profiling", () => {
  test("a session opened with profile writes onnxruntime's per-node timings; others refuse endProfiling", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "engine-profile-"));
    dirs.push(dir);
    const g = new Graph("profiled");
    const x = g.input("x", "float32", [8, 8]);
    const y = ops.tanh(ops.matmul(x, x));
    const plain = await compile(g, { outputs: { y }, runtime: rt });
    const profiled = await compile(g, { outputs: { y }, runtime: rt, profile: path.join(dir, "tiny") });
    expect(profiled.key).not.toBe(plain.key);
    for (let i = 0; i < 2; i++) await profiled.run({ x: seq(64) });
    const file = await profiled.endProfiling();
    expect(path.dirname(file)).toBe(dir);
    const events = JSON.parse(readFileSync(file, "utf8")) as { cat: string; args?: { op_name?: string } }[];
    const ops2 = events.filter((e) => e.cat === "Node").map((e) => e.args?.op_name);
    expect(ops2.filter((o) => o === "MatMul")).toHaveLength(2);
    expect(ops2).toContain("Tanh");
    await expect(plain.endProfiling()).rejects.toThrow(/not opened with the profile option/);
    // The session still runs after a refused call.
    expect((await plain.run({ x: seq(64) })).y).toHaveLength(64);
    await Promise.all([plain.dispose(), profiled.dispose()]);
  });
});

describe("external weights in safetensors files", () => {
  test("Hugging Face cache layout: snapshot symlinks into blobs/, two folders, bf16 cast in the graph", async () => {
    const root = mkdtempSync(path.join(tmpdir(), "engine-hf-"));
    dirs.push(root);
    const repo = path.join(root, "models--org--name");
    const snap = path.join(repo, "snapshots", "abc123");
    mkdirSync(path.join(repo, "blobs"), { recursive: true });
    mkdirSync(path.join(snap, "transformer"), { recursive: true });
    mkdirSync(path.join(snap, "vae"), { recursive: true });

    const w1 = seq(12, 0.5, 1);
    const bias = Float32Array.of(0.25, -0.5, 1);
    const w2 = Float32Array.from(seq(6, 2, 2), (v) => v);
    const w2bits = Uint16Array.from(w2, toBfloat16Bits);
    const blob1 = path.join(repo, "blobs", "1111");
    const blob2 = path.join(repo, "blobs", "2222");
    const off1 = writeSafetensors(blob1, {
      bias: { dtype: "F32", shape: [3], bytes: u8(bias) },
      w1: { dtype: "F32", shape: [4, 3], bytes: u8(w1) },
    });
    const off2 = writeSafetensors(blob2, { w2: { dtype: "BF16", shape: [3, 2], bytes: u8(w2bits) } });
    const f1 = path.join(snap, "transformer", "diffusion_pytorch_model.safetensors");
    const f2 = path.join(snap, "vae", "diffusion_pytorch_model.safetensors");
    symlinkSync("../../../blobs/1111", f1);
    symlinkSync("../../../blobs/2222", f2);

    const g = new Graph("ext");
    const x = g.input("x", "float32", [2, 4]);
    const W1 = g.initializer("w1", "float32", [4, 3], { path: f1, ...off1.w1! });
    const B = g.initializer("bias", "float32", [3], { path: f1, ...off1.bias! });
    const W2 = g.initializer("w2", "bfloat16", [3, 2], { path: f2, ...off2.w2! });
    const y = ops.matmul(ops.add(ops.matmul(x, W1), B), ops.cast(W2, "float32"));
    const xv = seq(8, 1, 4);
    // Both defaults (small weights) and the big-weight settings (no prepacking, folding or memory pattern).
    for (const opts of [{}, { prepacking: false, constantFolding: false, memoryPattern: false }]) {
      const session = await compile(g, { outputs: { y }, runtime: rt, ...opts });
      const out = await session.run({ x: xv });
      // Reference with the bf16-rounded weight values, fed as plain inputs.
      const r = new Graph();
      const rx = r.input("x", "float32", [2, 4]);
      const rw1 = r.input("w1", "float32", [4, 3]);
      const rb = r.input("b", "float32", [3]);
      const rw2 = r.input("w2", "float32", [3, 2]);
      const w2r = Float32Array.from(w2bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
      const [ref] = evaluate(r, { x: xv, w1: w1, b: bias, w2: w2r }, [
        ops.matmul(ops.add(ops.matmul(rx, rw1), rb), rw2),
      ]);
      expectClose(out.y!, ref!, 1e-5);
      await session.dispose();
    }
  });

  test("a length that disagrees with the tensor's shape is a build error naming the file", async () => {
    const g = new Graph();
    const w = g.initializer("w", "float32", [4], { path: "/nowhere/w.safetensors", offset: 8, length: 12 });
    await expect(compile(g, { outputs: { y: ops.neg(w) }, runtime: rt })).rejects.toThrow(
      /"w".*\/nowhere\/w.safetensors has 12 bytes.*needs 16/,
    );
  });
});
