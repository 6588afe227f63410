// (f) The engine against eager PyTorch on the tiny FLUX graph (tiny-flux-util.mjs: batch 4, 532 tokens):
// forward (the velocity) and forward + backward (mean(v²) differentiated for every weight), with the same
// weights and inputs. PyTorch runs tiny_flux_torch.py — the same model written in torch — in a child process
// (`PERF_PYTHON`, default python3); it first checks parity with the engine's velocity, loss and gradient norms
// (a baseline computing another function would be no baseline). Rounds: engine, PyTorch, engine; the engine's
// figure is the median over both of its rounds. Ratios are PyTorch ms / engine ms (higher: the engine is
// faster). Without a python3 that imports torch the script says how to get one and records a skip.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadEngine, median, report, timeMany } from "./perf-util.mjs";
import { tinyFluxPerfGraph } from "./tiny-flux-util.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.PERF_PYTHON ?? "python3";
const B = Number(process.env.PERF_BATCH ?? 4);
const REPS = Number(process.env.PERF_REPS ?? 5);

const probe = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
if (probe.status !== 0) {
  const how =
    "install PyTorch for the baseline: on Debian 12 `apt install python3-torch` (PyTorch 1.13, CPU), elsewhere " +
    "`pip install torch`; PERF_PYTHON=/path/to/python picks the interpreter";
  console.log(`tiny-flux-pytorch: skipped, ${python} cannot import torch. To run it, ${how}.`);
  report("tiny-flux-pytorch", { skipped: `${python} cannot import torch`, how });
  process.exit(0);
}

const engine = await loadEngine();
const model = await tinyFluxPerfGraph(engine, B);
const runtime = new engine.Runtime();
const forward = await runtime.compile(model.g, { outputs: { velocity: model.velocity } });
const gradientOutputs = Object.fromEntries(model.gradients.map((t, i) => [`g${i}`, t]));
const step = await runtime.compile(model.g, { outputs: { loss: model.loss, ...gradientOutputs } });
// Only the feeds each graph reads (the forward does not read every weight input's gradient path).
const feedsOf = (s) => Object.fromEntries(s.inputs.map((i) => [i.name, model.feeds[i.name]]));
const forwardFeeds = feedsOf(forward);
const stepFeeds = feedsOf(step);

// The exchange folder: every weight and input as float32, and the engine's results for the parity check.
const velocity = (await forward.run(forwardFeeds)).velocity;
const stepOut = await step.run(stepFeeds);
const norm = (a) => Math.sqrt(a.reduce((s, x) => s + x * x, 0));
const checked = model.weightNames.filter((_, i) => i % 5 === 0);
const dir = mkdtempSync(path.join(tmpdir(), "tiny-flux-pytorch-"));
const chunks = [];
let offset = 0;
const put = (data, shape) => {
  chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const entry = { offset, shape };
  offset += data.byteLength;
  return entry;
};
const manifest = {
  config: model.configJson,
  reps: REPS,
  weights: Object.fromEntries(
    model.weightNames.map((name) => [
      name,
      put(model.weights.get(name), [...model.g.inputs.find((t) => t.source.name === `w/${name}`).shape]),
    ]),
  ),
  inputs: Object.fromEntries(
    Object.entries(model.inputs).map(([k, t]) => [k, put(model.feeds[t.source.name], [...t.shape])]),
  ),
  reference: {
    velocity: put(velocity, [...model.velocity.shape]),
    loss: stepOut.loss[0],
    gradient_norms: Object.fromEntries(
      checked.map((name) => [name, norm(stepOut[`g${model.weightNames.indexOf(name)}`])]),
    ),
  },
};
writeFileSync(path.join(dir, "data.bin"), Buffer.concat(chunks));
writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest));

const engineTimes = { forward: [], forward_backward: [] };
const engineRound = async () => {
  engineTimes.forward.push(...(await timeMany(() => forward.run(forwardFeeds), REPS, 1)));
  engineTimes.forward_backward.push(...(await timeMany(() => step.run(stepFeeds), REPS, 1)));
};
let torchResult;
try {
  await engineRound();
  const r = spawnSync(python, [path.join(here, "tiny_flux_torch.py"), dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tiny_flux_torch.py failed:\n${r.stderr}`);
  torchResult = JSON.parse(r.stdout.trim().split("\n").pop());
  await engineRound();
} finally {
  rmSync(dir, { recursive: true, force: true });
  await runtime.close();
}

const { parity } = torchResult;
// fp32 on both sides, different summation orders: agreement to ~1e-4 of the output's scale.
const same =
  parity.velocity_max_abs_diff <= 1e-4 * Math.max(parity.velocity_scale, 1) &&
  parity.loss_rel_diff <= 1e-4 &&
  parity.gradient_norm_max_rel_diff <= 1e-3;
if (!same) {
  console.error(`tiny-flux-pytorch: PyTorch and the engine disagree: ${JSON.stringify(parity)}`);
  process.exitCode = 1;
}
const ms = {
  engine: Object.fromEntries(
    Object.entries(engineTimes).map(([k, xs]) => [k, Number(median(xs).toFixed(1))]),
  ),
  pytorch: Object.fromEntries(
    Object.entries(torchResult.median_ms).map(([k, v]) => [k, Number(v.toFixed(1))]),
  ),
};
report("tiny-flux-pytorch", {
  batch: B,
  torch: torchResult.torch,
  torch_threads: torchResult.threads,
  parity: { ...parity, same },
  median_ms: ms,
  ratios: same
    ? {
        forward_vs_pytorch: Number((ms.pytorch.forward / ms.engine.forward).toFixed(3)),
        forward_backward_vs_pytorch: Number(
          (ms.pytorch.forward_backward / ms.engine.forward_backward).toFixed(3),
        ),
      }
    : {},
});
