import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { FLUX_KONTEXT_SHAPES } from "@edit-r1/adapter-flux-kontext";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PhasePlan } from "./commands/plan.js";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

/**
 * `--attention-chunk N` (attention N heads at a time): the planned peak of the full-size FLUX-Kontext drops by
 * the score matrices of the heads not in the chunk, and on a FLUX.1-Kontext replica run by onnxruntime the
 * measured peak RSS drops too. Expectations are derived from the shipped shapes or are relations between runs.
 */

const MiB = 2 ** 20;

async function planOf(...args: string[]): Promise<{ phases: PhasePlan[]; attentionHeadChunk?: number }> {
  const c = capture();
  expect(await main(["plan", ...args, "--json"], c.io), c.err.join("\n")).toBe(0);
  return JSON.parse(c.out.join("\n"));
}

let tmp: string;
let model: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "plan-attention-"));
  model = join(tmp, "replica");
  const c = capture();
  expect(await main(["replica", "--adapter", "flux-kontext", "--out", model], c.io), c.err.join("\n")).toBe(
    0,
  );
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe("edit-r1 plan --attention-chunk", () => {
  it("full-size FLUX-Kontext: the rollout's peak loses the other heads' scores, the training step's drops, weights do not move", async () => {
    const list = JSON.parse(gunzipSync(readFileSync(FLUX_KONTEXT_SHAPES)).toString("utf8")) as {
      tensors: Record<string, number[]>;
    };
    const headDim = list.tensors["transformer_blocks.0.attn.norm_q.weight"]![0]!;
    const heads = list.tensors["transformer_blocks.0.attn.to_q.weight"]![0]! / headDim;
    // 512²: 32×32 target tokens, as many context tokens, Edit-R1's 128 T5 rows; bfloat16 scores.
    const tokens = 2 * 32 * 32 + 128;
    const scores = heads * tokens * tokens * 2;
    const args = ["--adapter", "flux-kontext", "--resolution", "512x512", "--device", "cuda"];
    const rest = ["--dtype", "bfloat16", "--train", "--recompute"];
    const plain = await planOf(...args, ...rest);
    const chunked = await planOf(...args, ...rest, "--attention-chunk", "4");
    expect(chunked.attentionHeadChunk).toBe(4);
    const [r0, t0] = plain.phases;
    const [r1, t1] = chunked.phases;
    expect(r1!.plan.weightBytes).toBe(r0!.plan.weightBytes);
    expect(t1!.plan.weightBytes).toBe(t0!.plan.weightBytes);
    // At least one score matrix of the heads outside the chunk (softmax's output is a second one).
    expect(r0!.plan.peakActivationBytes - r1!.plan.peakActivationBytes).toBeGreaterThan(
      ((heads - 4) / heads) * scores,
    );
    expect(t1!.plan.peakActivationBytes).toBeLessThan(t0!.plan.peakActivationBytes);
  }, 120_000);

  it("is refused where the adapter does not declare it, and must be a whole number of heads", async () => {
    for (const [args, message] of [
      [["--adapter", "tiny", "--attention-chunk", "1"], /cannot chunk its attention by heads/],
      [["--adapter", "flux-kontext", "--attention-chunk", "0"], /--attention-chunk must be an integer ≥ 1/],
    ] as const) {
      const c = capture();
      expect(await main(["plan", ...args], c.io)).toBe(2);
      expect(c.err.join("\n")).toMatch(message);
    }
  });
});

// A child process loads the replica's policy, builds the graphs a batch compiles, plans one and runs it through
// the engine's runtime while sampling its RSS (the run is in a worker thread, so the main thread keeps sampling).
const CHILD = `
import { adapter } from "FLUX_URL";
import { lower, measurePeakRss, planMemory } from "ENGINE_URL";
const { model, chunk, train } = JSON.parse(process.env.ATTN_CASE);
const policy = await adapter.loadPolicy({
  model, resolution: [512, 512], ...(train ? { recompute: true } : {}), ...(chunk ? { attentionHeadChunk: chunk } : {}),
});
const req = { key: "p", instruction: "x", source: { width: 512, height: 512, data: new Uint8Array(512 * 512 * 3).fill(128) } };
const graphs = policy.graphs(req, 1);
const built = train ? graphs.training : graphs.velocity;
const planned = planMemory(built.graph, built.outputs).totalBytes;
const lowered = lower(built.graph, { outputs: built.outputs });
const feeds = {};
for (const i of lowered.inputs) {
  const n = i.shape.reduce((a, b) => a * b, 1);
  feeds[i.name] = i.name === "t" ? new Float32Array(n).fill(0.5) : Float32Array.from({ length: n }, (_, k) => 0.1 * Math.sin(k));
}
await policy.dispose?.();
process.stdout.write(JSON.stringify({ planned, measured: await measurePeakRss(lowered, feeds) }));
`;

function measure(chunk: number | undefined, train: boolean): Promise<{ planned: number; measured: number }> {
  const dir = mkdtempSync(join(tmpdir(), "attn-measure-"));
  const script = join(dir, "measure.mjs");
  writeFileSync(
    script,
    CHILD.replace("FLUX_URL", import.meta.resolve("@edit-r1/adapter-flux-kontext")).replace(
      "ENGINE_URL",
      import.meta.resolve("@edit-r1/engine"),
    ),
  );
  return new Promise<{ planned: number; measured: number }>((resolve, reject) =>
    execFile(
      process.execPath,
      ["--expose-gc", script],
      { env: { ...process.env, ATTN_CASE: JSON.stringify({ model, chunk, train }) }, timeout: 120_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)),
    ),
  ).finally(() => rmSync(dir, { recursive: true, force: true }));
}

describe("attention one head at a time on a FLUX.1-Kontext replica (onnxruntime, CPU)", () => {
  // The replica has 2 heads; at 512² its float32 score matrix over 2·1024 + 128 tokens is 36 MiB for both heads.
  // Measured on the 2-core build machine: rollout step 56.9 → 38.0 MiB peak RSS (planned 75.2 → 39.7 MiB),
  // training step with per-block checkpointing 160.1 → 105.3 MiB (planned 117.3 → 63.4 MiB).
  const scores = 2 * 2176 * 2176 * 4;
  it("lowers the planned and the measured peak of a rollout step and of a checkpointed training step", async () => {
    for (const train of [false, true]) {
      const plain = await measure(undefined, train);
      const chunked = await measure(1, train);
      const report =
        `${train ? "training" : "rollout"}: planned ${(plain.planned / MiB).toFixed(1)} → ${(chunked.planned / MiB).toFixed(1)} MiB, ` +
        `measured ${(plain.measured / MiB).toFixed(1)} → ${(chunked.measured / MiB).toFixed(1)} MiB`;
      // One head's scores fewer in the plan (and its softmax); at least a quarter of that in RSS.
      expect(plain.planned - chunked.planned, report).toBeGreaterThan(scores / 2);
      expect(plain.measured - chunked.measured, report).toBeGreaterThan(scores / 8);
    }
  }, 180_000);
});
