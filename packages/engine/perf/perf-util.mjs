// Shared helpers of the engine perf scripts: they run against dist/ (build first) and write JSON under the
// repository's .perf/ folder. Timings are medians of interleaved repetitions, to resist noisy shared CPUs.
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");

export async function loadEngine() {
  try {
    return await import(path.join(here, "../dist/index.js"));
  } catch (e) {
    throw new Error(
      `cannot load packages/engine/dist (run \`pnpm --filter @edit-r1/engine build\` first): ${e.message}`,
    );
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

/** Times `fn` (async) `n` times after `warmup` calls; returns per-call milliseconds. */
export async function timeMany(fn, n, warmup = 3) {
  for (let i = 0; i < warmup; i++) await fn();
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await fn();
    out.push(now() - t);
  }
  return out;
}

/** `xs` rotated by `k` places: rounds that alternate variants start from a different one each time. */
export function rotate(xs, k) {
  const r = k % xs.length;
  return [...xs.slice(r), ...xs.slice(0, r)];
}

/**
 * Writes `.perf/engine-<name>.json`. By convention `result.ratios` holds the figures `pnpm perf` tracks:
 * each one ours against a baseline measured in the same run, oriented so that higher is better.
 */
export function report(name, result) {
  const dir = path.join(repoRoot, ".perf");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `engine-${name}.json`);
  writeFileSync(file, `${JSON.stringify({ name, date: new Date().toISOString(), ...result }, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
  console.log(`→ ${path.relative(repoRoot, file)}`);
}

/**
 * Sums an onnxruntime profile (Chrome trace JSON from Session.endProfiling) by op type: kernel time per
 * run in ms (mean over `runs`), node count per run, share of all kernel time, and for MatMul/Gemm the FLOP
 * rate (FLOPs from the recorded shapes: 2 · |output| · k). Also the `top` slowest nodes with their shapes,
 * and with `classify(inputShapes, op)` → a label, kernel time per label.
 */
export function summarizeProfile(events, runs, { top = 12, classify } = {}) {
  const byOp = new Map();
  const byNode = new Map();
  const byClass = new Map();
  let total = 0;
  for (const e of events) {
    if (e.cat !== "Node" || !e.args?.op_name) continue;
    const op = e.args.op_name;
    const s = byOp.get(op) ?? { op, us: 0, nodes: 0, flops: 0 };
    const flops = matmulFlops(op, e.args);
    s.us += e.dur;
    s.nodes++;
    s.flops += flops;
    total += e.dur;
    byOp.set(op, s);
    if (classify) {
      const label = classify(
        (e.args.input_type_shape ?? []).map((t) => Object.values(t)[0]),
        op,
      );
      byClass.set(label, (byClass.get(label) ?? 0) + e.dur);
    }
    const name = e.name.replace(/_kernel_time$/, "");
    const n = byNode.get(name) ?? {
      node: name,
      op,
      inputs: (e.args.input_type_shape ?? []).map((t) => Object.values(t)[0]),
      us: 0,
      flops: 0,
    };
    n.us += e.dur;
    n.flops += flops;
    byNode.set(name, n);
  }
  const rate = (flops, us) => (flops ? { gflops: Number((flops / (us * 1000)).toFixed(1)) } : {});
  const ops = [...byOp.values()]
    .sort((x, y) => y.us - x.us)
    .map((s) => ({
      op: s.op,
      ms_per_run: Number((s.us / runs / 1000).toFixed(3)),
      nodes_per_run: s.nodes / runs,
      share: Number((s.us / total).toFixed(3)),
      ...rate(s.flops, s.us),
    }));
  const nodes = [...byNode.values()]
    .sort((x, y) => y.us - x.us)
    .slice(0, top)
    .map((n) => ({
      node: n.node,
      op: n.op,
      inputs: n.inputs.map((d) => d?.join("×")).join(", "),
      ms_per_run: Number((n.us / runs / 1000).toFixed(3)),
      ...rate(n.flops, n.us),
    }));
  const runEvents = events.filter((e) => e.name === "model_run");
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    kernel_ms_per_run: Number((total / runs / 1000).toFixed(2)),
    model_run_ms: runEvents.length
      ? Number((mean(runEvents.map((e) => e.dur)) / 1000).toFixed(2))
      : undefined,
    ops,
    ...(classify
      ? {
          by_class: Object.fromEntries(
            [...byClass].map(([k, us]) => [
              k,
              { ms_per_run: Number((us / runs / 1000).toFixed(2)), share: Number((us / total).toFixed(3)) },
            ]),
          ),
        }
      : {}),
    top_nodes: nodes,
  };
}

/** FLOPs of a MatMul/Gemm/FusedMatMul profile event: 2 · |output| · k. */
function matmulFlops(op, args) {
  if (op !== "MatMul" && op !== "Gemm" && op !== "FusedMatMul") return 0;
  const shapes = (args.input_type_shape ?? []).map((t) => Object.values(t)[0]);
  const out = Object.values(args.output_type_shape?.[0] ?? {})[0];
  const a = shapes[0];
  const b = shapes[1];
  if (!a || !out || !b) return 0;
  // k is the dimension a and b share that the output lacks; transposed operands put it first.
  const m = out[out.length - 2];
  const k =
    a[a.length - 1] === m && a.length >= 2 && a[a.length - 2] !== m ? a[a.length - 2] : a[a.length - 1];
  return 2 * out.reduce((x, y) => x * y, 1) * k;
}
