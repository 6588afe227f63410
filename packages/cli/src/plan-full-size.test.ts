import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { FLUX_KONTEXT_SHAPES } from "@edit-r1/adapter-flux-kontext";
import { QWEN_IMAGE_EDIT_SHAPES } from "@edit-r1/adapter-qwen-image-edit";
import { describe, expect, it } from "vitest";
import type { PhasePlan, ShapeSource, TrainingState } from "./commands/plan.js";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

/**
 * `edit-r1 plan` on the full-size models from the tensor shapes the adapters ship (no weights): the whole graph
 * is built at full size and walked. Every expectation is derived here from the shipped key lists, or is a
 * relation between plans; no figure is written down.
 */

interface Plan {
  shapes: ShapeSource;
  phases: PhasePlan[];
  training?: TrainingState;
  peakBytes: number;
  residentBytes: number;
  fits: Record<string, { step: boolean; run: boolean }>;
}

async function planOf(adapter: string, resolution: string, ...extra: string[]): Promise<Plan> {
  const c = capture();
  const args = ["plan", "--adapter", adapter, "--resolution", resolution, "--device", "cuda"];
  const code = await main([...args, "--dtype", "bfloat16", "--train", ...extra, "--json"], c.io);
  expect(code, c.err.join("\n")).toBe(0);
  return JSON.parse(c.out.join("\n")) as Plan;
}

/** The shipped key list read independently of the code under test. */
function keyList(path: string): { dtype: string; tensors: Record<string, number[]> } {
  return JSON.parse(gunzipSync(readFileSync(path)).toString("utf8"));
}
const BYTES: Record<string, number> = { bfloat16: 2, float16: 2, float32: 4 };
const count = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const storedBytes = (l: ReturnType<typeof keyList>) =>
  Object.values(l.tensors).reduce((n, s) => n + count(s) * BYTES[l.dtype]!, 0);

/** Edit-R1's LoRA recipe (rank 32 on the attention projections; PEFT matches module names by suffix). */
const TARGETS = [
  "attn.to_q",
  "attn.to_k",
  "attn.to_v",
  "attn.to_out.0",
  "attn.add_q_proj",
  "attn.add_k_proj",
  "attn.add_v_proj",
  "attn.to_add_out",
];
function loraParameters(l: ReturnType<typeof keyList>, rank: number): number {
  let n = 0;
  for (const [key, shape] of Object.entries(l.tensors)) {
    if (!key.endsWith(".weight") || shape.length !== 2) continue;
    const module = key.slice(0, -".weight".length);
    if (TARGETS.some((t) => module.endsWith(`.${t}`))) n += rank * (shape[0]! + shape[1]!);
  }
  return n;
}

const GB = 1e9;

describe("edit-r1 plan on the full-size models (shipped shapes, no weights)", () => {
  it("FLUX-Kontext: every stored weight is reached, LoRA as Edit-R1's recipe, training > rollout, 1024² > 512², recompute helps", async () => {
    const list = keyList(FLUX_KONTEXT_SHAPES);
    const p512 = await planOf("flux-kontext", "512x512");
    const p1024 = await planOf("flux-kontext", "1024x1024");
    const r512 = await planOf("flux-kontext", "512x512", "--recompute");
    expect(p512.shapes.bytes).toBe(storedBytes(list));
    expect(p512.shapes.tensors).toBe(Object.keys(list.tensors).length);
    for (const p of [p512, p1024, r512]) {
      const [rollout, training] = p.phases;
      // The transformer's whole output reaches every tensor of the checkpoint.
      expect(rollout!.plan.weightBytes).toBe(storedBytes(list));
      expect(training!.plan.weightBytes).toBe(storedBytes(list));
      expect(training!.plan.peakActivationBytes).toBeGreaterThan(rollout!.plan.peakActivationBytes);
      expect(training!.plan.totalBytes).toBeGreaterThan(rollout!.plan.totalBytes);
      expect(p.training!.parameters).toBe(loraParameters(list, 32));
      // θ and θ_old (float32) are the training step's feeds beyond latents and conditions.
      expect(training!.plan.inputBytes - rollout!.plan.inputBytes).toBeGreaterThanOrEqual(
        p.training!.deviceFeedBytes / 2,
      );
      // Two sessions, two copies of the weights.
      expect(p.residentBytes).toBeGreaterThanOrEqual(p.peakBytes + storedBytes(list));
      for (const [name, f] of Object.entries(p.fits)) {
        const gb = Number(name.replace("GB", ""));
        expect(f.step).toBe(p.peakBytes <= gb * GB);
        expect(f.run).toBe(p.residentBytes <= gb * GB);
      }
    }
    expect(p1024.phases[0]!.plan.peakActivationBytes).toBeGreaterThan(
      p512.phases[0]!.plan.peakActivationBytes,
    );
    expect(p1024.phases[1]!.plan.totalBytes).toBeGreaterThan(p512.phases[1]!.plan.totalBytes);
    // Checkpointing per block keeps one block's interior alive in the backward pass instead of all of them.
    expect(r512.phases[1]!.plan.peakActivationBytes).toBeLessThan(
      p512.phases[1]!.plan.peakActivationBytes / 4,
    );
    expect(r512.phases[0]!.plan).toEqual(p512.phases[0]!.plan);
  }, 60_000);

  it("Qwen-Image-Edit and UniWorld: weights within the key list, the same plan for UniWorld's released LoRA", async () => {
    const list = keyList(QWEN_IMAGE_EDIT_SHAPES);
    const q512 = await planOf("qwen-image-edit", "512x512", "--recompute");
    const q1024 = await planOf("qwen-image-edit", "1024x1024", "--recompute");
    const u512 = await planOf("uniworld", "512x512", "--recompute");
    expect(q512.shapes.bytes).toBe(storedBytes(list));
    const [rollout, training] = q512.phases;
    // The last block's text stream feeds nothing, so a few tensors may go unread; never more than the list holds.
    expect(training!.plan.weightBytes).toBeLessThanOrEqual(storedBytes(list));
    expect(training!.plan.weightBytes).toBeGreaterThan(0.99 * storedBytes(list));
    expect(training!.plan.totalBytes).toBeGreaterThan(rollout!.plan.totalBytes);
    expect(q512.training!.parameters).toBe(loraParameters(list, 32));
    expect(q1024.phases[1]!.plan.totalBytes).toBeGreaterThan(training!.plan.totalBytes);
    expect(u512.phases).toEqual(q512.phases);
  }, 60_000);

  it("prints the answer in words; --recompute without shipped shapes plans the adapter's own checkpointing", async () => {
    const c = capture();
    const args = ["plan", "--adapter", "flux-kontext", "--resolution", "512x512", "--device", "cuda"];
    expect(await main([...args, "--dtype", "bfloat16", "--train"], c.io), c.err.join("\n")).toBe(0);
    const text = c.out.join("\n");
    expect(text).toMatch(/full-size shapes of black-forest-labs\/FLUX\.1-Kontext-dev/);
    expect(text).toMatch(/^ {2}LoRA: \d+ factors, [\d.]+ M parameters/m);
    expect(text).toMatch(/^peak: /m);
    expect(text).toMatch(/^resident in a run: /m);
    expect(text).toMatch(/^fits: 80 GB .*, 141 GB /m);
    expect(text).toMatch(/^margin: a lower bound/m);
    // The tiny adapter ships no shapes but declares per-block checkpointing: its own policy plans it.
    const trainingPeak = async (...extra: string[]) => {
      const t = capture();
      expect(
        await main(["plan", "--adapter", "tiny", "--train", "--json", ...extra], t.io),
        t.err.join("\n"),
      ).toBe(0);
      const plan = JSON.parse(t.out.join("\n")) as Plan;
      return plan.phases.find((p) => p.phase === "training")!.plan.peakActivationBytes;
    };
    expect(await trainingPeak("--recompute")).toBeLessThan(await trainingPeak());
  }, 60_000);
});
