// The device check's JavaScript half (packed by scripts/pack-device-check.mjs, run by scripts/device-check.sh):
// on one execution provider, a few tiny-adapter training steps (a rollout, then fused NFT steps with AdamW, then
// the same steps with the training state kept on the device, as `edit-r1 train` runs them on webgpu) and one
// FLUX-Kontext-size double-stream block forward + backward (LoRA gradients) with random weights. Prints one line
// per measurement ("device-check <device> <what> …"); exits 1 when something failed on a device that loaded.
// Part "block-lean" is the same block checkpointed as a recompute region with attention 4 heads at a time (what
// `edit-r1 train --recompute --attention-chunk 4` builds): the same loss, and the device memory it saves shows
// in device-check.sh's per-part peaks.
//   node driver.mjs --device cpu|webgpu|cuda [--part all|tiny|block|block-lean] [--block full|small] [--steps 3]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    device: { type: "string", default: "cpu" },
    part: { type: "string", default: "all" },
    block: { type: "string", default: "full" },
    steps: { type: "string", default: "3" },
    resolution: { type: "string" },
  },
});
const device = values.device;
const steps = Number(values.steps);
const say = (what, text) => console.log(`device-check ${device} ${what}: ${text}`);
const ms = (t0) => `${(performance.now() - t0).toFixed(0)} ms`;
const engine = await import("@edit-r1/engine");

/** A small deterministic generator (xorshift32) for feeds and weights: uniform in [-scale, scale]. */
function uniform(n, scale, seed) {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

async function tiny() {
  const { adapter } = await import("@edit-r1/adapter-tiny");
  const { AdamW, DEFAULT_ADAMW, DEFAULT_NFT_SETTINGS } = await import("@edit-r1/core");
  const zeros = (set) =>
    Object.fromEntries(Object.entries(set).map(([k, v]) => [k, new Float32Array(v.length)]));
  const runtime = new engine.Runtime({ workers: 1 });
  let t0 = performance.now();
  const policy = await adapter.loadPolicy({ device });
  const grey = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(128) };
  const instructions = [
    "remove the red circle",
    "remove the green triangle",
    "remove the blue square",
    "remove the red square",
  ];
  const requests = instructions.map((instruction, i) => ({ key: `r${i}`, instruction, source: grey }));
  await policy.prepare(requests);
  say("tiny load+prepare", ms(t0));
  const params = policy.initialParameters();
  const old = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Float32Array.from(v)]));
  const B = requests.length;
  const n = policy.latentSize(requests[0]);
  const sigmas = policy.sigmas(requests);
  const velocity = policy.velocity(requests, params);
  let x = uniform(B * n, 1.7, 1);
  t0 = performance.now();
  for (let i = 0; i + 1 < sigmas.length; i++) {
    const t1 = performance.now();
    const v = await velocity(x, sigmas[i], i);
    const dt = sigmas[i + 1] - sigmas[i];
    x = x.map((xi, j) => xi + dt * v[j]);
    if (i === 0) say("tiny rollout step 1 (compile + run)", ms(t1));
  }
  say(`tiny rollout (${sigmas.length - 1} Euler steps, batch ${B})`, ms(t0));
  const initial = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Float32Array.from(v)]));
  const opt = new AdamW(params, { lr: 1e-3 });
  const batches = [];
  for (let s = 0; s < steps; s++) {
    const batch = {
      requests,
      x0: x,
      noise: uniform(B * n, 1.7, 100 + s),
      t: Float64Array.from({ length: B }, (_, i) => sigmas[1 + ((s + i) % (sigmas.length - 2))]),
      advantages: Float64Array.from([1, -1, 0.5, -0.5]),
      validMask: new Uint8Array(B).fill(1),
      settings: DEFAULT_NFT_SETTINGS,
    };
    batches.push(batch);
    const t1 = performance.now();
    const r = await policy.lossAndGradients(batch, params, old);
    const norm = Math.sqrt(
      Object.values(r.gradients).reduce((a, g) => a + g.reduce((b, v) => b + v * v, 0), 0),
    );
    opt.update(params, r.gradients);
    say(
      `tiny training step ${s + 1}${s === 0 ? " (compile + run)" : ""}`,
      `${ms(t1)}, loss ${r.loss.toPrecision(7)}, grad norm ${norm.toPrecision(5)}`,
    );
    if (!Number.isFinite(r.loss) || !Number.isFinite(norm)) throw new Error("non-finite loss or gradient");
  }
  // The same steps with the training state kept on the device (what `edit-r1 train` does on webgpu): θ, θ_old,
  // EMA, AdamW's moments and the gradient sums stay there; each step sends the batch and gets the loss back.
  // Clipping is off (norm 1e9) to match the steps above.
  const resident = await adapter.loadPolicy({ device });
  await resident.prepare(requests);
  const state = resident.deviceTraining({ ...DEFAULT_ADAMW, lr: 1e-3 }, 1e9);
  if (!state) {
    say("tiny device-resident steps", "skipped: the training state stays on the device on webgpu only");
    await resident.dispose?.();
    await policy.dispose?.();
    await runtime.close();
    return;
  }
  await state.load({ params: initial, oldParams: old, ema: initial, m: zeros(initial), v: zeros(initial) });
  for (const [s, batch] of batches.entries()) {
    const t1 = performance.now();
    const r = await state.accumulate(batch, 1);
    // η = 1 keeps θ_old where it was, as the host steps above do.
    const norm = await state.update({ adamStep: s + 1, emaDecay: 0.5, oldPolicyEta: 1 });
    say(
      `tiny device-resident step ${s + 1}${s === 0 ? " (compile + run)" : ""}`,
      `${ms(t1)}, loss ${r.loss.toPrecision(7)}, grad norm ${norm.toPrecision(5)}`,
    );
    if (!Number.isFinite(r.loss) || !Number.isFinite(norm))
      throw new Error("non-finite device-resident step");
  }
  const after = await state.read();
  let worst = 0;
  for (const [k, v] of Object.entries(params))
    for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(after.params[k][i] - v[i]));
  say("tiny device-resident θ vs host AdamW", `max |Δ| ${worst.toExponential(2)} (lr 1e-3 a step)`);
  // float32 on the device against float64 on the host: measured 5.6e-7 on lavapipe; a wrong update is off by ~lr.
  if (!(worst <= 1e-4)) throw new Error(`device-resident θ differs from the host's AdamW by ${worst}`);
  await state.dispose();
  await resident.dispose?.();
  await policy.dispose?.();
  await runtime.close();
}

async function block(lean = false) {
  const models = await import("@edit-r1/models");
  const name = lean ? "block-lean" : "block";
  const full = values.block === "full";
  // FLUX.1-Kontext-dev's dimensions (hidden 3072 = 24 heads × 128, T5 width 4096) or a small stand-in for a
  // check of the script itself on a machine without a GPU.
  // (A config object, not parsed: one double-stream block and no single-stream block is not a checkpoint's.)
  const heads = full ? 24 : 4;
  const config = {
    patchSize: 1,
    inChannels: 64,
    outChannels: 64,
    numLayers: 1,
    numSingleLayers: 0,
    attentionHeadDim: 128,
    numAttentionHeads: heads,
    jointAttentionDim: full ? 4096 : 512,
    pooledProjectionDim: 768,
    guidanceEmbeds: true,
    axesDimsRope: [16, 56, 56],
  };
  const side = Number((values.resolution ?? (full ? "512" : "128")).split("x")[0]);
  const imageTokens = 2 * (side / 16) ** 2; // target + Kontext context tokens
  const textTokens = 128; // Edit-R1's T5 rows
  const sizes = { batch: 1, imageTokens, textTokens };
  const lora = { rank: 32, alpha: 64, targets: models.EDIT_R1_LORA_TARGETS };
  // The weight keys and shapes the block asks for, then random weights in a safetensors file (external data).
  const scratch = new engine.Graph("record");
  const rec = new models.RecordingWeights(scratch, {
    present: ["time_text_embed.guidance_embedder.linear_1.weight"],
  });
  models.buildFluxTransformer(scratch, config, rec, models.fluxTransformerInputs(scratch, config, sizes));
  const dir = mkdtempSync(join(tmpdir(), "device-check-block-"));
  try {
    let t0 = performance.now();
    const tensors = {};
    let params = 0;
    let seed = 7;
    for (const [key, shape] of rec.shapes) {
      const count = shape.reduce((a, b) => a * b, 1);
      params += count;
      const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
      const data =
        shape.length === 1 && key.endsWith(".weight")
          ? new Float32Array(count).fill(1)
          : uniform(count, 0.5 / Math.sqrt(fanIn), seed++);
      tensors[key] = { dtype: "float32", shape, data };
    }
    const file = join(dir, "block.safetensors");
    await engine.writeSafetensors(file, tensors);
    say(
      `${name} weights`,
      `${(params / 1e6).toFixed(1)} M parameters (float32, ${((params * 4) / 2 ** 30).toFixed(2)} GiB), ${imageTokens} image + ${textTokens} text tokens, hidden ${config.numAttentionHeads * config.attentionHeadDim}, ${config.numAttentionHeads} heads; written in ${ms(t0)}`,
    );
    const g = new engine.Graph("flux_double_block");
    const inputs = models.fluxTransformerInputs(g, config, sizes);
    const weights = await models.openSafetensorsWeights(file);
    const out = models.buildFluxTransformer(g, config, weights, inputs, {
      lora,
      // 4 of FLUX's 24 heads at a time; one of the small stand-in's 4.
      ...(lean ? { recompute: true, attentionHeadChunk: full ? 4 : 1 } : {}),
    });
    const loss = engine.ops.reduceMean(engine.ops.mul(out.sample, out.sample));
    const grads = engine.grad(
      loss,
      out.lora.map((p) => p.input),
    );
    const outputs = { loss };
    out.lora.forEach((p, i) => {
      outputs[`grad.${p.key}`] = grads[i];
    });
    const feeds = {};
    let k = 1000;
    t0 = performance.now();
    const runtime = new engine.Runtime({ workers: 1 });
    const session = await engine.compile(g, { outputs, device, runtime, cpuFallback: false });
    say(`${name} compile`, ms(t0));
    for (const i of session.inputs ?? []) {
      const count = i.shape.reduce((a, b) => a * b, 1);
      feeds[i.name] = i.name.includes("ids")
        ? new Float32Array(count)
        : i.name.includes("timestep")
          ? new Float32Array(count).fill(0.5)
          : i.name.includes("guidance")
            ? new Float32Array(count).fill(2.5)
            : uniform(count, 0.05, k++);
    }
    for (let r = 0; r < 3; r++) {
      const t1 = performance.now();
      const res = await session.run(feeds);
      const l = res.loss[0];
      say(
        `${name} forward+backward run ${r + 1}${r === 0 ? " (first)" : ""}`,
        `${ms(t1)}, loss ${l.toPrecision(7)}`,
      );
      if (!Number.isFinite(l)) throw new Error("non-finite block loss");
    }
    await session.dispose?.();
    await runtime.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let failed = false;
for (const [part, fn] of [
  ["tiny", tiny],
  ["block", () => block()],
  ["block-lean", () => block(true)],
]) {
  if (values.part !== "all" && values.part !== part) continue;
  try {
    await fn();
  } catch (e) {
    failed = true;
    say(`${part} FAILED`, (e?.stack ?? String(e)).split("\n").slice(0, 6).join(" | "));
  }
}
await engine.closeDefaultRuntime?.();
process.exit(failed ? 1 : 0);
