// (b) Opening a session over a 1 GiB float32 safetensors weight (a sparse file of zeros): wall time of
// compile() and peak extra resident memory while it opens, as a fraction of the file size. The weight is
// used the way models use it, through nn.linear (PyTorch [out, in] layout). Targets: < 1 s, < 0.2×.
// Baseline, same run: a raw onnxruntime InferenceSession.create of the same lowered model with the options
// the engine uses for big weights (no prepacking, no memory pattern), in this thread. Tracked ratio: raw
// open time / engine open time (lowering, hashing and the worker round trip are the difference).
import {
  closeSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import ort from "onnxruntime-node";
import { loadEngine, now, report } from "./perf-util.mjs";

const { Graph, lower, nn, Runtime } = await loadEngine();
const D = Number(process.env.PERF_DIM ?? 16384); // 16384² float32 = 1 GiB

const dir = mkdtempSync(path.join(tmpdir(), "engine-perf-open-"));
const file = path.join(dir, "model.safetensors");
const header = JSON.stringify({ w: { dtype: "F32", shape: [D, D], data_offsets: [0, D * D * 4] } });
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(header.length));
const fd = openSync(file, "w");
writeSync(fd, Buffer.concat([len, Buffer.from(header)]));
ftruncateSync(fd, 8 + header.length + D * D * 4);
closeSync(fd);
const bytes = D * D * 4;

function status(key) {
  const m = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

const runtime = new Runtime();
// Start the worker (and load onnxruntime) first so only the session's own cost is measured.
{
  const g = new Graph("warm");
  const x = g.input("x", "float32", [1]);
  await (await runtime.compile(g, { outputs: { y: nn.silu(x) } })).dispose();
}

const g = new Graph("open");
const x = g.input("x", "float32", [1, D]);
const w = g.initializer("w", "float32", [D, D], { path: file, offset: 8 + header.length, length: bytes });
const y = nn.linear(x, w);

const rssBefore = status("VmRSS");
let peakSampled = rssBefore;
const timer = setInterval(() => {
  peakSampled = Math.max(peakSampled, process.memoryUsage().rss);
}, 2);
let resetHwm = false;
try {
  writeFileSync("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS (Linux ≥ 4.0)
  resetHwm = true;
} catch {}
const t0 = now();
const session = await runtime.compile(g, { outputs: { y } });
const openMs = now() - t0;
clearInterval(timer);
const peak = Math.max(peakSampled, resetHwm ? status("VmHWM") : 0);
const t1 = now();
await session.run({ x: new Float32Array(D).fill(1) });
const firstRunMs = now() - t1;
const t2 = now();
const out = await session.run({ x: new Float32Array(D).fill(1) });
const secondRunMs = now() - t2;
const rssAfterRun = status("VmRSS");
await session.dispose();
const model = lower(g, { outputs: { y } });
const t3 = now();
const raw = await ort.InferenceSession.create(model.bytes, {
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  enableMemPattern: false,
  extra: {
    session: {
      model_external_initializers_file_folder_path: model.externalFolder,
      disable_prepacking: "1",
      "intra_op.allow_spinning": "0",
      "inter_op.allow_spinning": "0",
    },
  },
});
const rawOpenMs = now() - t3;
await raw.release();
await runtime.close();
rmSync(dir, { recursive: true, force: true });

const extra = peak - rssBefore;
report("open-weights", {
  file_bytes: bytes,
  open_ms: Number(openMs.toFixed(1)),
  raw_open_ms: Number(rawOpenMs.toFixed(1)),
  peak_extra_rss_bytes: extra,
  peak_extra_rss_fraction: Number((extra / bytes).toFixed(3)),
  first_run_ms: Number(firstRunMs.toFixed(1)),
  second_run_ms: Number(secondRunMs.toFixed(1)),
  rss_after_runs_bytes: rssAfterRun,
  output_is_zero: out.y.every((v) => v === 0),
  ratios: { raw_vs_engine_open: Number((rawOpenMs / openMs).toFixed(3)) },
  targets: { open_ms: 1000, peak_extra_rss_fraction: 0.2 },
  ok: openMs < 1000 && extra / bytes < 0.2,
});
