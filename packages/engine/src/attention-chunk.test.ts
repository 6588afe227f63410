import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { grad, RECOMPUTE_OF_ATTR } from "./autodiff.js";
import { Graph, GraphError, type Tensor } from "./graph.js";
import { evaluate } from "./interpret.js";
import { lower } from "./lower.js";
import { planMemory } from "./memory-plan.js";
import * as nn from "./nn.js";
import * as o from "./ops.js";
import { compile, Runtime } from "./runtime.js";
import { gradCheck, rng } from "./test-gradcheck.js";

/**
 * Attention chunked by heads (`scaledDotProductAttention(..., { headChunk })`) and the nested recompute regions
 * it relies on: same values and gradients as unchunked (interpreter and onnxruntime), and a lower memory peak,
 * planned and measured (peak RSS of a child process running the graph through onnxruntime).
 */

const rt = new Runtime({ workers: 1 });
afterAll(async () => {
  await rt.close();
});

function randoms(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

interface Built {
  g: Graph;
  out: Tensor;
  grads: Tensor[];
  forwardNodes: number;
}

/**
 * q/k/v [B, H, L, D] inputs, attention (optionally chunked, optionally inside a per-block region with a
 * projection after it so the block's recomputation needs the attention output), a loss and its gradients.
 */
function build(
  shape: { b: number; h: number; lq: number; lk: number; d: number },
  options: { headChunk?: number; block?: boolean; mask?: "heads" | "broadcast" },
): Built & { feeds: Record<string, Float32Array> } {
  const { b, h, lq, lk, d } = shape;
  const g = new Graph("attn");
  const q = g.input("q", "float32", [b, h, lq, d]);
  const k = g.input("k", "float32", [b, h, lk, d]);
  const v = g.input("v", "float32", [b, h, lk, d]);
  const w = g.input("w", "float32", [d, d]);
  const feeds: Record<string, Float32Array> = {
    q: randoms(q.size, 1),
    k: randoms(k.size, 2),
    v: randoms(v.size, 3),
    w: randoms(w.size, 4),
  };
  let mask: Tensor | undefined;
  if (options.mask) {
    const mshape = options.mask === "heads" ? [1, h, lq, lk] : [lq, lk];
    mask = g.input("mask", "float32", mshape);
    // Every row keeps its first key; others dropped in a pattern that differs per head.
    feeds.mask = Float32Array.from({ length: mask.size }, (_, i) =>
      i % lk !== 0 && (i * 7) % 5 === 0 ? -1e4 : 0,
    );
  }
  const attend = () => {
    const a = nn.scaledDotProductAttention(q, k, v, {
      ...(mask ? { mask } : {}),
      ...(options.headChunk ? { headChunk: options.headChunk } : {}),
    });
    return o.tanh(o.matmul(a, w));
  };
  const out = options.block ? g.recompute(attend) : attend();
  const loss = o.reduceSum(o.mul(out, out));
  const forwardNodes = g.nodes.length;
  const grads = grad(loss, mask ? [q, k, v, w, mask] : [q, k, v, w]);
  return { g, out, grads, forwardNodes, feeds };
}

const SHAPE = { b: 2, h: 5, lq: 6, lk: 7, d: 4 };

describe("attention chunked by heads", () => {
  it("gives the unchunked values and gradients (interpreter), with uneven chunks, masks and a per-block region", () => {
    for (const mask of [undefined, "heads", "broadcast"] as const) {
      const plain = build(SHAPE, mask ? { mask } : {});
      const want = evaluate(plain.g, plain.feeds, [plain.out, ...plain.grads]);
      for (const headChunk of [1, 2, 3]) {
        for (const block of [false, true]) {
          const chunked = build(SHAPE, { headChunk, block, ...(mask ? { mask } : {}) });
          const got = evaluate(chunked.g, chunked.feeds, [chunked.out, ...chunked.grads]);
          got.forEach((values, i) => {
            const label = `mask ${mask}, headChunk ${headChunk}, block ${block}, output ${i}`;
            // The same float64 arithmetic per head, and gradients summed from disjoint pieces.
            expect(Math.max(...values.map((x, j) => Math.abs(x - want[i]![j]!))), label).toBeLessThanOrEqual(
              1e-12,
            );
          });
        }
      }
    }
  });

  it("matches central differences", () => {
    const res = gradCheck(
      { q: { shape: [1, 3, 4, 2] }, k: { shape: [1, 3, 5, 2] }, v: { shape: [1, 3, 5, 2] } },
      ({ q, k, v }) => o.reduceSum(o.tanh(nn.scaledDotProductAttention(q!, k!, v!, { headChunk: 2 }))),
    );
    expect(res.worst, res.worstAt).toBeLessThanOrEqual(1);
    expect(res.maxAbsNumeric).toBeGreaterThan(1e-3);
  });

  it("runs through onnxruntime like the interpreter (values and gradients)", async () => {
    for (const block of [false, true]) {
      const built = build(SHAPE, { headChunk: 2, block, mask: "heads" });
      const outputs: Record<string, Tensor> = { out: built.out };
      built.grads.forEach((t, i) => {
        outputs[`d${i}`] = t;
      });
      const session = await compile(built.g, { outputs, runtime: rt });
      try {
        const got = await session.run(built.feeds);
        const want = evaluate(built.g, built.feeds, Object.values(outputs));
        Object.keys(outputs).forEach((key, i) => {
          const a = got[key] as Float32Array;
          const b = want[i]!;
          const scale = Math.max(...b.map(Math.abs));
          expect(scale, key).toBeGreaterThan(0);
          expect(Math.max(...a.map((x, j) => Math.abs(x - b[j]!))) / scale, key).toBeLessThanOrEqual(1e-5);
        });
      } finally {
        await session.dispose();
      }
    }
  });

  it("leaves the graph unchanged when unchunked, and refuses a bad chunk naming the option", () => {
    const count = (headChunk?: number) => {
      const g = new Graph();
      const q = g.input("q", "float32", [1, 4, 3, 2]);
      nn.scaledDotProductAttention(q, q, q, headChunk === undefined ? {} : { headChunk });
      return g.nodes.map((n) => n.op).join(",");
    };
    expect(count(4)).toBe(count());
    expect(count(9)).toBe(count());
    expect(count(2)).not.toBe(count());
    expect(() => count(0)).toThrow(GraphError);
    expect(() => count(1.5)).toThrow(/headChunk must be a positive integer/);
  });

  it("the planner sees one chunk's scores instead of all heads'", () => {
    const shape = { b: 1, h: 8, lq: 256, lk: 256, d: 16 };
    const scores = shape.h * shape.lq * shape.lk * 4;
    for (const block of [false, true]) {
      const peak = (headChunk?: number) => {
        const built = build(shape, { block, ...(headChunk ? { headChunk } : {}) });
        const outputs = Object.fromEntries(built.grads.map((t, i) => [`d${i}`, t]));
        return planMemory(built.g, block ? outputs : { out: built.out }).peakActivationBytes;
      };
      const plain = peak();
      const chunked = peak(1);
      // All heads' scores (and their softmax) against one head's: at least 1.5 score matrices fewer.
      expect(plain - chunked, `block ${block}`).toBeGreaterThan(1.5 * scores);
    }
  });
});

describe("nested recompute regions", () => {
  it("recompute the inner interior in the inner backward, and keep nothing from inside the outer region", () => {
    const built = build(SHAPE, { headChunk: 2, block: true });
    const { g, forwardNodes } = built;
    const forward = g.nodes.slice(0, forwardNodes);
    const backward = g.nodes.slice(forwardNodes);
    const outermost = (r: number) => {
      let top = r;
      for (let p = g.recomputeParent(top); p !== undefined; p = g.recomputeParent(top)) top = p;
      return top;
    };
    // Tensors produced inside the per-block region (chunks included) that only the region reads.
    const interior = new Set<number>();
    for (const n of forward) {
      if (n.recompute === undefined) continue;
      for (const t of n.outputs) {
        const readers = forward.filter((m) => m.inputs.includes(t));
        if (
          readers.every(
            (m) => m.recompute !== undefined && outermost(m.recompute) === outermost(n.recompute!),
          )
        )
          interior.add(t.id);
      }
    }
    expect(interior.size).toBeGreaterThan(0);
    const leaks = backward.filter((n) => n.inputs.some((t) => interior.has(t.id)));
    expect(leaks.map((n) => `${n.op}#${n.id}`)).toEqual([]);
    // Each chunk's softmax: once for the block's recomputation (its output feeds the projection's gradient),
    // once more for the chunk's own backward.
    const softmaxes = forward.filter((n) => n.op === "Softmax");
    expect(softmaxes.length).toBe(3);
    for (const s of softmaxes) {
      expect(backward.filter((n) => n.attrs[RECOMPUTE_OF_ATTR] === s.id).length).toBe(2);
    }
  });

  it("single-level regions are cloned once, as before", () => {
    const built = build(SHAPE, { block: true });
    const softmax = built.g.nodes.find((n) => n.op === "Softmax")!;
    const clones = built.g.nodes.filter((n) => n.attrs[RECOMPUTE_OF_ATTR] === softmax.id);
    expect(clones.length).toBe(1);
  });

  it("mark lowered models that recompute, so sessions keep onnxruntime from merging the clones back", () => {
    const lowered = (block: boolean, headChunk?: number) => {
      const built = build(SHAPE, { block, ...(headChunk ? { headChunk } : {}) });
      return lower(built.g, { outputs: { d: built.grads[0]! } }).recomputes;
    };
    expect(lowered(false)).toBe(false);
    expect(lowered(true)).toBe(true);
    expect(lowered(false, 2)).toBe(true);
  });
});

// ---- Measured: peak RSS of onnxruntime running the graph -----------------------------------------------

const MiB = 2 ** 20;

const CHILD = `
import { Graph, grad, lower, measurePeakRss, nn, ops } from "ENGINE_URL";
const { chunk, train, stack } = JSON.parse(process.env.ATTN_CASE);
let outputs;
if (stack) {
  // A stack of MLP blocks with [8192, 1024] interiors, per-block recompute regions or none.
  const g = new Graph("stack");
  const x = g.input("x", "float32", [8192, 64]);
  const ws = Array.from({ length: 4 }, (_, i) => [g.input("a" + i, "float32", [64, 1024]), g.input("b" + i, "float32", [1024, 64])]);
  let h = x;
  for (const [a, b] of ws) {
    const hin = h;
    const f = () => ops.add(hin, ops.matmul(ops.tanh(ops.matmul(hin, a)), b));
    h = stack === "recompute" ? g.recompute(f) : f();
  }
  outputs = Object.fromEntries(grad(ops.reduceMean(ops.mul(h, h)), ws.flat()).map((t, i) => ["d" + i, t]));
} else {
  const [B, H, L, D] = [1, 8, 1024, 32];
  const g = new Graph("attn");
  const x = g.input("x", "float32", [B, L, H * D]);
  const ws = ["wq", "wk", "wv"].map((n) => g.input(n, "float32", [H * D, H * D]));
  const heads = (t) => ops.transpose(ops.reshape(t, [B, L, H, D]), [0, 2, 1, 3]);
  const block = () => {
    const [q, k, v] = ws.map((w) => heads(ops.matmul(x, w)));
    const a = nn.scaledDotProductAttention(q, k, v, chunk ? { headChunk: chunk } : {});
    return ops.add(x, ops.reshape(ops.transpose(a, [0, 2, 1, 3]), [B, L, H * D]));
  };
  const y = train ? g.recompute(block) : block();
  outputs = train ? Object.fromEntries(grad(ops.reduceMean(ops.mul(y, y)), ws).map((t, i) => ["d" + i, t])) : { y };
}
const lowered = lower(Object.values(outputs)[0].graph, { outputs });
const feeds = {};
for (const i of lowered.inputs) {
  const n = i.shape.reduce((a, b) => a * b, 1);
  feeds[i.name] = Float32Array.from({ length: n }, (_, k) => 0.05 * Math.sin(0.37 * k));
}
process.stdout.write(JSON.stringify({ bytes: await measurePeakRss(lowered, feeds) }));
`;

/** Peak RSS growth of a child process opening and running the case (a module file: workers need one). */
function measure(chunk: number | undefined, train: boolean, stack?: "recompute" | "plain"): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "attn-measure-"));
  const script = join(dir, "measure.mjs");
  writeFileSync(script, CHILD.replace("ENGINE_URL", new URL("../dist/index.js", import.meta.url).href));
  return new Promise<number>((resolve, reject) =>
    execFile(
      process.execPath,
      ["--expose-gc", script],
      { env: { ...process.env, ATTN_CASE: JSON.stringify({ chunk, train, stack }) }, timeout: 120_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout).bytes),
    ),
  ).finally(() => rmSync(dir, { recursive: true, force: true }));
}

describe("measured on onnxruntime (CPU)", () => {
  // onnxruntime's common-subexpression elimination merges each recomputed node into its forward twin unless the
  // session turns it off (LoweredModel.recomputes); then the regions save nothing. Measured on the 2-core build
  // machine: 219.5 MiB without regions, 219.5 with them and CSE on, 121.5 with CSE off (planned 200.3 → 104.3).
  it("per-block recompute regions lower the peak RSS of a training step", async () => {
    const plain = await measure(undefined, true, "plain");
    const recomputed = await measure(undefined, true, "recompute");
    const report = `no regions ${(plain / MiB).toFixed(1)} MiB, per-block regions ${(recomputed / MiB).toFixed(1)} MiB`;
    // The blocks' [8192, 1024] float32 interiors (32 MiB each) are no longer kept: at least two fewer.
    expect(plain - recomputed, report).toBeGreaterThan(64 * MiB);
  }, 120_000);

  // 8 heads × 1024² float32 scores: 32 MiB for all heads, 4 MiB for one. Measured on the 2-core build machine:
  // forward 39.5 → 16.0 MiB, training step (per-block region) 115 → 40 MiB.
  it("one head at a time lowers the peak RSS of a forward pass and of a recomputed training step", async () => {
    for (const train of [false, true]) {
      const plain = await measure(undefined, train);
      const chunked = await measure(1, train);
      const report = `${train ? "training" : "forward"}: unchunked ${(plain / MiB).toFixed(1)} MiB, one head at a time ${(chunked / MiB).toFixed(1)} MiB`;
      // At least half of the all-heads score matrix fewer.
      expect(plain - chunked, report).toBeGreaterThan(16 * MiB);
    }
  }, 120_000);
});
