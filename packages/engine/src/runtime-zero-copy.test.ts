// The runtime's buffer handling: staging buffers reused across runs, moved feeds, kept (resident) feeds,
// caller-owned output arrays, and failed runs. Correctness only; speed is measured by `pnpm perf`.
import { afterAll, describe, expect, test } from "vitest";
import { Graph } from "./graph.js";
import * as ops from "./ops.js";
import { FeedError, Runtime, RuntimeError, type Session } from "./runtime.js";

const rt = new Runtime();
afterAll(() => rt.close());

const N = 4096; // 16 KiB per float32 feed: big enough that a stale byte anywhere would show

function data(seed: number, n = N): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * (1 + seed));
}

/** y = 2x + w and the identity of x (an output that onnxruntime could alias to the feed). */
async function affine(name: string): Promise<Session> {
  const g = new Graph(name);
  const x = g.input("x", "float32", [N]);
  const w = g.input("w", "float32", [N]);
  return rt.compile(g, { outputs: { y: ops.add(ops.mul(x, 2), w), same: x } });
}

function expectAffine(out: Record<string, unknown>, x: Float32Array, w: Float32Array) {
  const y = out.y as Float32Array;
  const same = out.same as Float32Array;
  expect(y.length).toBe(N);
  for (let i = 0; i < N; i++) {
    if (y[i] !== Math.fround(Math.fround(2 * x[i]!) + w[i]!))
      throw new Error(`y[${i}] = ${y[i]}, expected ${Math.fround(Math.fround(2 * x[i]!) + w[i]!)}`);
    if (same[i] !== x[i]) throw new Error(`same[${i}] = ${same[i]}, x = ${x[i]}`);
  }
}

describe("staging buffers", () => {
  test("reused across calls: the second and third runs with other inputs are correct and allocate nothing", async () => {
    const s = await affine("reuse");
    const inputs = [1, 2, 3].map((k) => ({ x: data(k), w: data(10 + k) }));
    const snapshots = inputs.map(({ x, w }) => ({ x: x.slice(), w: w.slice() }));
    const outs: Record<string, unknown>[] = [];
    const allocations: number[] = [];
    for (const feeds of inputs) {
      outs.push(await s.run(feeds));
      allocations.push(s.stagingAllocations);
    }
    // One staging buffer per input, allocated by the first run and lent again to the next ones.
    expect(allocations).toEqual([2, 2, 2]);
    inputs.forEach((f, k) => {
      expectAffine(outs[k]!, snapshots[k]!.x, snapshots[k]!.w);
      // Caller-owned inputs are neither detached nor written.
      expect(f.x).toEqual(snapshots[k]!.x);
      expect(f.w).toEqual(snapshots[k]!.w);
    });
    // Outputs of earlier runs, the identity of a feed included, were not overwritten by later runs.
    expect(outs[0]!.same).toEqual(snapshots[0]!.x);
    expect(outs[0]!.y).not.toBe(outs[1]!.y);
    await s.dispose();
  });

  test("concurrent runs on one session each get their own buffer and their own result", async () => {
    const s = await affine("concurrent");
    const feeds = [1, 2, 3, 4, 5].map((k) => ({ x: data(k), w: data(-k) }));
    const outs = await Promise.all(feeds.map((f) => s.run(f)));
    for (const [k, o] of outs.entries()) expectAffine(o, feeds[k]!.x, feeds[k]!.w);
    // Later sequential runs find an idle buffer again.
    const before = s.stagingAllocations;
    expectAffine(await s.run(feeds[2]!), feeds[2]!.x, feeds[2]!.w);
    expect(s.stagingAllocations).toBe(before);
    await s.dispose();
  });

  test("moved feeds are detached and become staging buffers; the same array fed twice is moved once", async () => {
    const g = new Graph("moved");
    const a = g.input("a", "float32", [N]);
    const b = g.input("b", "float32", [N]);
    const s = await rt.compile(g, { outputs: { d: ops.sub(a, b) } });
    const x = data(1);
    const keepX = x.slice();
    const out = await s.run({ a: x, b: x }, { transfer: true });
    expect(x.length).toBe(0);
    expect([...(out.d as Float32Array)].every((v) => v === 0)).toBe(true);
    // The moved buffer came back to the pool: the next copying run allocates only for "b" if at all.
    const before = s.stagingAllocations;
    const y = data(2);
    const out2 = await s.run({ a: y, b: keepX });
    expect(s.stagingAllocations).toBe(before);
    for (let i = 0; i < N; i++) expect((out2.d as Float32Array)[i]).toBe(Math.fround(y[i]! - keepX[i]!));
    expect(y).toEqual(data(2));
    await s.dispose();
  });

  test("SharedArrayBuffer feeds are accepted (copied: onnxruntime-node refuses shared memory)", async () => {
    const s = await affine("shared");
    const x = new Float32Array(new SharedArrayBuffer(N * 4));
    x.set(data(5));
    const w = data(6);
    expectAffine(await s.run({ x, w }), data(5), data(6));
    // Moving is asked for, but shared memory cannot be moved: x is copied, w (a plain buffer) moved.
    expectAffine(await s.run({ x, w }, { transfer: true }), data(5), data(6));
    expect(x).toEqual(data(5));
    expect(w.length).toBe(0);
    await s.dispose();
  });
});

describe("into: caller-owned output arrays", () => {
  test("results land in the given arrays, which later runs overwrite only because the caller opted in", async () => {
    const s = await affine("into");
    const y = new Float32Array(N);
    const o1 = await s.run({ x: data(1), w: data(2) }, { into: { y } });
    expect(o1.y).toBe(y);
    expectAffine(o1, data(1), data(2));
    const firstSame = o1.same;
    const o2 = await s.run({ x: data(3), w: data(4) }, { into: { y } });
    expect(o2.y).toBe(y);
    expectAffine(o2, data(3), data(4));
    // "same" was not given an array: the first run's result is still its own.
    expect(firstSame).toEqual(data(1));
    await s.dispose();
  });

  test("wrong names, types and sizes are refused before anything runs", async () => {
    const s = await affine("into-bad");
    const feeds = { x: data(1), w: data(2) };
    await expect(s.run(feeds, { into: { z: new Float32Array(N) } })).rejects.toThrow(
      /into\["z"\] is not an output/,
    );
    await expect(s.run(feeds, { into: { y: new Float64Array(N) } })).rejects.toThrow(
      /into\["y"\] is a Float64Array but the output is float32/,
    );
    await expect(s.run(feeds, { into: { y: new Float32Array(3) } })).rejects.toThrow(FeedError);
    expectAffine(await s.run(feeds), data(1), data(2));
    await s.dispose();
  });
});

describe("kept feeds", () => {
  test("kept once, used by later runs, copied from the caller, overridden per run, forgotten on request", async () => {
    const s = await affine("kept");
    const w = data(7);
    await s.keep({ w });
    expect(s.keptInputs).toEqual(["w"]);
    w.fill(0); // the caller's array is its own again: the worker holds a copy
    expectAffine(await s.run({ x: data(1) }), data(1), data(7));
    expectAffine(await s.run({ x: data(2) }), data(2), data(7));
    expectAffine(await s.run({ x: data(2), w: data(8) }), data(2), data(8));
    expectAffine(await s.run({ x: data(3) }), data(3), data(7));
    // Keeping again replaces; a run issued without awaiting keep() already sees the new value.
    const pending = s.keep({ w: data(9) });
    const out = s.run({ x: data(4) });
    await pending;
    expectAffine(await out, data(4), data(9));
    await s.forget(["w"]);
    expect(s.keptInputs).toEqual([]);
    await expect(s.run({ x: data(1) })).rejects.toThrow(/missing feed "w"/);
    await expect(s.keep({ nope: data(1) })).rejects.toThrow(/unknown feed "nope"/);
    await expect(s.keep({ w: new Float32Array(2) })).rejects.toThrow(FeedError);
    await s.dispose();
  });

  test("kept feeds belong to one handle of a shared session and leave with it", async () => {
    const a = await affine("handles");
    const b = await affine("handles");
    expect(a.key).toBe(b.key);
    await a.keep({ w: data(1) });
    await b.keep({ w: data(2) });
    expectAffine(await a.run({ x: data(3) }), data(3), data(1));
    expectAffine(await b.run({ x: data(3) }), data(3), data(2));
    await a.dispose();
    expectAffine(await b.run({ x: data(4) }), data(4), data(2));
    const c = await affine("handles");
    await expect(c.run({ x: data(1) })).rejects.toThrow(/missing feed "w"/);
    await Promise.all([b.dispose(), c.dispose()]);
  });
});

describe("failed runs leave the session usable", () => {
  /** out = table[idx] * scale: an out-of-range index fails inside onnxruntime, after the feeds crossed. */
  async function lookup(): Promise<Session> {
    const g = new Graph("lookup");
    const table = g.input("table", "float32", [8, N / 8]);
    const idx = g.input("idx", "int64", [2]);
    const scale = g.input("scale", "float32", [1]);
    return rt.compile(g, { outputs: { out: ops.mul(ops.gather(table, idx, 0), scale) } });
  }
  const row = (t: Float32Array, r: number) => t.subarray((r * N) / 8, ((r + 1) * N) / 8);

  test("an onnxruntime error mid-run: typed error, staging buffers and kept feeds survive, next runs are right", async () => {
    const s = await lookup();
    const t1 = data(1);
    await s.keep({ scale: Float32Array.of(2) });
    const ok1 = await s.run({ table: t1, idx: BigInt64Array.of(0n, 7n) });
    const allocated = s.stagingAllocations;
    const bad = s.run({ table: data(2), idx: BigInt64Array.of(1n, 99n) });
    await expect(bad).rejects.toThrow(RuntimeError);
    await expect(bad).rejects.toThrow(/indices|out of|bounds/i);
    for (const k of [3, 4]) {
      const t = data(k);
      const out = (await s.run({ table: t, idx: BigInt64Array.of(5n, 2n) })).out as Float32Array;
      expect(out.subarray(0, N / 8)).toEqual(row(t, 5).map((v) => Math.fround(v * 2)));
      expect(out.subarray(N / 8)).toEqual(row(t, 2).map((v) => Math.fround(v * 2)));
    }
    // The failed run handed its buffers back: nothing new was allocated for the runs after it.
    expect(s.stagingAllocations).toBe(allocated);
    // The first run's output is untouched by everything since.
    expect((ok1.out as Float32Array).subarray(0, N / 8)).toEqual(row(t1, 0).map((v) => Math.fround(v * 2)));
    await s.dispose();
  });

  test("bad feeds fail before anything is sent; a failing run beside a good one does not disturb it", async () => {
    const s = await lookup();
    const feeds = { table: data(1), idx: BigInt64Array.of(3n, 4n), scale: Float32Array.of(1) };
    await expect(s.run({ ...feeds, table: new Float32Array(5) })).rejects.toThrow(FeedError);
    await expect(s.run({ ...feeds, idx: Int32Array.of(0, 1) })).rejects.toThrow(FeedError);
    const [good, bad, good2] = await Promise.allSettled([
      s.run(feeds),
      s.run({ ...feeds, table: data(9), idx: BigInt64Array.of(-100n, 0n) }),
      s.run({ ...feeds, table: data(2) }),
    ]);
    expect(bad.status).toBe("rejected");
    expect(good.status).toBe("fulfilled");
    expect(good2.status).toBe("fulfilled");
    const out = (good as PromiseFulfilledResult<Record<string, Float32Array>>).value.out!;
    expect(out.subarray(0, N / 8)).toEqual(row(data(1), 3));
    const out2 = (good2 as PromiseFulfilledResult<Record<string, Float32Array>>).value.out!;
    expect(out2.subarray(N / 8)).toEqual(row(data(2), 4));
    expect(feeds.table).toEqual(data(1));
    await s.dispose();
  });
});
