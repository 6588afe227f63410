// Full-size FLUX.1-Kontext-dev transformer (11.9 B params, 1160 bf16 tensors named as in the diffusers checkpoint,
// keys in flux-kontext-dev-transformer.keys.txt) from a 23.8 GB safetensors file of zeros made as a sparse file:
// time to open the weights, build the velocity graph (512² edit: 1024 target + 1024 context + 512 text tokens,
// with and without Edit-R1's r=32 LoRA), and open the onnxruntime session; peak RSS of the process, workers
// included; then the same for the fused NFT training graph (θ, old, reference passes and the LoRA gradients,
// 128 T5 tokens). No forward pass is run. Targets: build + open < 30 s, peak RSS < 4 GiB. Runs against dist/.
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
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../..");
const load = async (pkg) => {
  try {
    return await import(path.join(repoRoot, pkg, "dist/index.js"));
  } catch (e) {
    throw new Error(`cannot load ${pkg}/dist (build it first): ${e.message}`);
  }
};
const { Graph, Runtime, ops } = await load("packages/engine");
const {
  buildFluxTransformer,
  buildKontextVelocity,
  imageTokenIds,
  openSafetensorsWeights,
  parseFluxTransformerConfig,
} = await load("packages/models");
const { GraphNftPolicyCore } = await load("packages/core");

const now = () => Number(process.hrtime.bigint()) / 1e6;
const rss = () => {
  const m = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m);
  return Number(m[1]) * 1024;
};

// 1. The sparse checkpoint.
const lines = readFileSync(path.join(here, "flux-kontext-dev-transformer.keys.txt"), "utf8").split("\n");
const config = JSON.parse(lines[0].replace(/^# \S+ config=/, ""));
const header = {};
let offset = 0;
for (const line of lines) {
  if (!line || line.startsWith("#")) continue;
  const [name, shape] = line.split("\t");
  const dims = JSON.parse(shape);
  const bytes = dims.reduce((a, b) => a * b, 1) * 2;
  header[name] = { dtype: "BF16", shape: dims, data_offsets: [offset, offset + bytes] };
  offset += bytes;
}
const dir = mkdtempSync(path.join(tmpdir(), "flux-kontext-perf-"));
const file = path.join(dir, "diffusion_pytorch_model.safetensors");
const json = Buffer.from(JSON.stringify(header));
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(json.length));
const fd = openSync(file, "w");
writeSync(fd, Buffer.concat([len, json]));
ftruncateSync(fd, 8 + json.length + offset);
closeSync(fd);

const runtime = new Runtime();
const result = {
  tensors: Object.keys(header).length,
  bytes: offset,
  tokens: { target: 1024, context: 1024, text: 512 },
};
try {
  // Load onnxruntime in the worker first, so the session's own cost is what is timed.
  {
    const g = new Graph("warm");
    const x = g.input("x", "float32", [1]);
    await (await runtime.compile(g, { outputs: { y: ops.mul(x, 2) } })).dispose();
  }
  const rssStart = rss();
  let t = now();
  const weights = await openSafetensorsWeights(file);
  const cfg = parseFluxTransformerConfig(config);
  result.openWeightsMs = now() - t;

  for (const variant of ["base", "lora-r32"]) {
    const T = 1024;
    const C = 1024;
    const L = 512;
    t = now();
    const g = new Graph(`kontext_${variant}`);
    const latents = g.input("latents", "float32", [1, T, 64]);
    const context = g.input("context_latents", "float32", [1, C, 64]);
    const ids = new Float32Array([...imageTokenIds(64, 64, 0), ...imageTokenIds(64, 64, 1)]);
    const { sample, lora } = buildFluxTransformer(
      g,
      cfg,
      weights,
      {
        hiddenStates: ops.concat([latents, context], 1),
        encoderHiddenStates: g.input("encoder_hidden_states", "float32", [1, L, 4096]),
        pooledProjections: g.input("pooled_projections", "float32", [1, 768]),
        timestep: g.input("timestep", "float32", [1]),
        guidance: g.input("guidance", "float32", [1]),
        imgIds: g.constant(ids, [T + C, 3]),
        txtIds: g.constant(new Float32Array(L * 3), [L, 3]),
      },
      variant === "base" ? {} : { lora: { rank: 32, alpha: 64 } },
    );
    const velocity = ops.slice(sample, [0], [T], [1]);
    const buildMs = now() - t;
    t = now();
    const session = await runtime.compile(g, { outputs: { velocity } });
    const openSessionMs = now() - t;
    await session.dispose();
    result[variant] = {
      buildGraphMs: Math.round(buildMs),
      openSessionMs: Math.round(openSessionMs),
      totalMs: Math.round(buildMs + openSessionMs),
      loraFactors: lora.length,
    };
    console.log(variant, result[variant]);
  }
  // The fused DiffusionNFT step of the trainable policy (FluxKontextPolicy's graph): v_θ (r=32 LoRA inputs),
  // v_old (a second set of LoRA inputs), v_ref (no LoRA) sharing one set of frozen initializers, the NFT loss,
  // and d loss/d θ for every factor. Edit-R1's rollout shapes: 1024 target + 1024 context + 128 T5 tokens.
  {
    const T = 1024;
    const L = 128;
    const transformer = { config: cfg, weights };
    const probe = new Graph("probe");
    const inp = (n, s) => probe.input(n, "float32", s);
    const { lora } = buildKontextVelocity(
      probe,
      transformer,
      {
        latents: inp("x", [1, 1, 64]),
        context: inp("c", [1, 1, 64]),
        text: inp("t5", [1, 1, 4096]),
        pooled: inp("p", [1, 768]),
        timestep: inp("t", [1]),
        guidance: inp("g", [1]),
      },
      { targetGrid: [2, 2], contextGrid: [2, 2], lora: { rank: 32, alpha: 64 } },
    );
    const parameters = Object.fromEntries(lora.map((p) => [p.key, p.input.shape]));
    const core = new GraphNftPolicyCore(
      {
        latentShape: [T, 64],
        conditions: {
          context: { dtype: "float32", shape: [T, 64] },
          text: { dtype: "float32", shape: [L, 4096] },
          pooled: { dtype: "float32", shape: [768] },
        },
        parameters,
        buildVelocity: (g, xt, t, cond, params) =>
          buildKontextVelocity(
            g,
            transformer,
            {
              latents: xt,
              context: cond.context,
              text: cond.text,
              pooled: cond.pooled,
              timestep: t,
              guidance: g.constant(new Float32Array([2.5]), [1]),
            },
            {
              targetGrid: [64, 64],
              contextGrid: [64, 64],
              lora: params ? { rank: 32, alpha: 64, tensors: params } : undefined,
            },
          ).velocity,
      },
      { runtime },
    );
    t = now();
    const { graph, outputs } = core.trainingGraph(1);
    const buildMs = now() - t;
    t = now();
    const session = await runtime.compile(graph, { outputs });
    const openSessionMs = now() - t;
    await session.dispose();
    result["nft-step-r32"] = {
      buildGraphMs: Math.round(buildMs),
      openSessionMs: Math.round(openSessionMs),
      totalMs: Math.round(buildMs + openSessionMs),
      loraFactors: lora.length,
      textTokens: L,
    };
    console.log("nft-step-r32", result["nft-step-r32"]);
  }
  result.peakRssBytes = rss();
  result.peakRssGiB = +(result.peakRssBytes / 2 ** 30).toFixed(2);
  result.rssAtStartGiB = +(rssStart / 2 ** 30).toFixed(2);
  result.targets = { totalMs: 30000, peakRssGiB: 4 };
  result.meetsTargets =
    result.base.totalMs < 30000 && result["lora-r32"].totalMs < 30000 && result.peakRssGiB < 4;
} finally {
  await runtime.close?.();
  rmSync(dir, { recursive: true, force: true });
}
const out = path.join(repoRoot, ".perf");
const { mkdirSync } = await import("node:fs");
mkdirSync(out, { recursive: true });
writeFileSync(
  path.join(out, "adapter-flux-kontext-full-size-transformer.json"),
  `${JSON.stringify({ name: "full-size-transformer", date: new Date().toISOString(), ...result }, null, 2)}\n`,
);
console.log(JSON.stringify(result, null, 2));
