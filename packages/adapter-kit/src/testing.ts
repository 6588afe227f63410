import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Adapter,
  type AdapterLoadOptions,
  type BuiltGraph,
  checkAdapter,
  DEFAULT_NFT_SETTINGS,
  type Editor,
  type EditRequest,
  nftLoss,
  type ParamSet,
  type RgbImage,
  Rng,
  requestWithSources,
  type TrainablePolicy,
} from "@edit-r1/core";
import { planMemory } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** What `describeAdapterContract` checks an adapter with. */
export interface AdapterContractSubject {
  adapter: Adapter;
  /**
   * Runs before the checks (write a tiny replica, …) and returns the options every load gets (e.g. `model`: the
   * replica's folder, small `steps`, a `resolution`) and at least two requests with different keys.
   */
  setup(): Promise<{ options?: AdapterLoadOptions; requests: EditRequest[] }>;
  /** Runs after the checks. */
  teardown?(): Promise<void>;
  /**
   * Largest relative L2 difference allowed between fp32 results that are equal in exact arithmetic but computed
   * in another batch or graph (default 1e-5).
   */
  tolerance?: number;
}

/** ‖a − b‖ / ‖b‖. */
function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** Largest difference of two images' bytes (0 = identical). */
function imageDiff(a: RgbImage, b: RgbImage): number {
  expect([a.width, a.height]).toEqual([b.width, b.height]);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

/** θ with every lora_B replaced by small seeded values, so the LoRA changes the model. */
function withRandomB(params: ParamSet, seed: number, scale = 0.05): ParamSet {
  const rng = new Rng(seed);
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => [
      k,
      k.endsWith(".lora_B.weight") ? rng.normals(v.length).map((x) => x * scale) : Float32Array.from(v),
    ]),
  );
}

const scaleB = (params: ParamSet, s: number): ParamSet =>
  Object.fromEntries(
    Object.entries(params).map(([k, v]) => [k, k.endsWith(".lora_B.weight") ? v.map((x) => x * s) : v]),
  );

/**
 * The contract every adapter keeps, as a vitest suite: call it from the adapter's tests with its Adapter and a
 * few requests. It checks, through the public interfaces only: core accepts the declared capabilities and
 * rejects undeclared options by name; the rollout velocity is the training graph's velocity (the fused NFT
 * step's loss equals core's reference loss computed from rollout velocities); LoRA B = 0 is the base model;
 * batch invariance; seed determinism (noise and LoRA init apart); an exported LoRA loads back exactly, into the
 * policy and the editor, where `loraScale` s equals a LoRA with s·B. An adapter that applies a LoRA of its own
 * (`capabilities.builtInLora`) is the base model at `loraScale` 0, and seeds only fresh LoRAs (a `loraConfig`).
 */
export function describeAdapterContract(subject: AdapterContractSubject): void {
  const { adapter } = subject;
  let options: AdapterLoadOptions = {};
  const tolerance = subject.tolerance ?? 1e-5;
  let requests: EditRequest[];
  let policy: TrainablePolicy & { dispose?(): Promise<void> };
  let tmp: string;
  const editors: Editor[] = [];
  const editor = async (extra: AdapterLoadOptions = {}): Promise<Editor> => {
    const e = await adapter.loadEditor({ ...options, ...extra });
    editors.push(e);
    return e;
  };

  describe(`adapter contract: ${adapter.name}`, () => {
    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), `contract-${adapter.name}-`));
      const given = await subject.setup();
      requests = given.requests;
      options = given.options ?? {};
      if (requests.length < 2 || new Set(requests.map((r) => r.key)).size !== requests.length)
        throw new Error("describeAdapterContract: give at least two requests with different keys");
      if (!adapter.loadPolicy) throw new Error(`adapter "${adapter.name}" has no loadPolicy`);
      policy = await adapter.loadPolicy(options);
      await policy.prepare?.(requests);
    });
    afterAll(async () => {
      await Promise.all(editors.map((e) => e.close?.()));
      await policy?.dispose?.();
      await rm(tmp, { recursive: true, force: true });
      await subject.teardown?.();
    });

    it("declares what core checks, and a CLI description", () => {
      expect(() => checkAdapter(adapter, options, "edit")).not.toThrow();
      expect(() => checkAdapter(adapter, options, "train")).not.toThrow();
      expect(adapter.cli.description.length).toBeGreaterThan(0);
      expect(adapter.capabilities.loraTargets.length).toBeGreaterThan(0);
    });

    it("rejects options it cannot honour, naming the adapter and the option", async () => {
      const name = new RegExp(`"${adapter.name}"`);
      const caps = adapter.capabilities;
      expect(() => checkAdapter(adapter, { ...options, device: "tpu" as "cpu" }, "edit")).toThrow(name);
      const missingDtype = (["float32", "float16", "bfloat16"] as const).find(
        (d) => !caps.dtypes.includes(d),
      );
      if (missingDtype)
        expect(() => checkAdapter(adapter, { ...options, dtype: missingDtype }, "edit")).toThrow(
          /does not compute in/,
        );
      if (caps.resolutions !== "any")
        expect(() => checkAdapter(adapter, { ...options, resolution: [8, 8] }, "edit")).toThrow(
          /does not generate 8×8/,
        );
      if (caps.guidance === "none")
        expect(() => checkAdapter(adapter, { ...options, guidance: 2 }, "edit")).toThrow(/has no guidance/);
      expect(() =>
        checkAdapter(adapter, { ...options, loraConfig: { rank: 2, targets: ["no.such.module"] } }, "train"),
      ).toThrow(/cannot put LoRA on "no.such.module"/);
      // More source images than declared: the policy and the editor refuse the request, naming it.
      const r = requests[0]!;
      const extra = requestWithSources(r, Array(caps.maxSourceImages + 1).fill(r.source));
      expect(() => policy.latentSize(extra)).toThrow(
        new RegExp(`"${r.key}" has ${caps.maxSourceImages + 1} source images`),
      );
      await expect((await editor()).edit([extra])).rejects.toThrow(/source images/);
      const missing = join(tmp, "no-such-lora");
      await expect(adapter.loadEditor({ ...options, lora: missing })).rejects.toThrow(missing);
    });

    it("rolls out with the velocity the fused training step differentiates", async () => {
      const theta = withRandomB(policy.initialParameters(), 1);
      const old = withRandomB(policy.initialParameters(), 2);
      const ref = scaleB(theta, 0);
      const B = requests.length;
      const D = policy.latentSize(requests[0]!);
      const sigmas = policy.sigmas(requests);
      const t = sigmas[Math.floor(sigmas.length / 2)]!;
      const rng = new Rng(7);
      const x0 = rng.normals(B * D);
      const noise = rng.normals(B * D);
      const xt = Float32Array.from(x0, (v, i) => (1 - t) * v + t * noise[i]!);
      const v = async (p: ParamSet) => policy.velocity(requests, p)(xt, t, 0);
      const [vTheta, vOld, vRef] = [await v(theta), await v(old), await v(ref)];
      const advantages = Float64Array.from({ length: B }, (_, i) => (i % 2 ? -1.2 : 0.8));
      const reference = nftLoss({
        x0,
        noise,
        t: new Float64Array(B).fill(t),
        vTheta,
        vOld,
        vRef,
        advantages,
        ...DEFAULT_NFT_SETTINGS,
      });
      const fused = await policy.lossAndGradients(
        {
          requests,
          x0,
          noise,
          t: new Float64Array(B).fill(t),
          advantages,
          validMask: new Uint8Array(B).fill(1),
          settings: DEFAULT_NFT_SETTINGS,
        },
        theta,
        old,
      );
      expect(reference.klLoss).toBeGreaterThan(0);
      // fp32 graph against a float64 loss from fp32 velocities: agreement to ~1e-5 relative.
      expect(Math.abs(fused.policyLoss - reference.policyLoss) / Math.abs(reference.policyLoss)).toBeLessThan(
        1e-4,
      );
      expect(Math.abs(fused.klLoss - reference.klLoss) / reference.klLoss).toBeLessThan(1e-3);
      for (const [k, g] of Object.entries(fused.gradients)) expect(g.every(Number.isFinite), k).toBe(true);
    });

    it("is batch-invariant: a request alone gives what it gives in a batch", async () => {
      const theta = withRandomB(policy.initialParameters(), 3);
      const D = policy.latentSize(requests[0]!);
      const x = new Rng(11).normals(requests.length * D);
      const sigma = policy.sigmas(requests)[1]!;
      const batched = await policy.velocity(requests, theta)(x, sigma, 1);
      const alone = await policy.velocity([requests[0]!], theta)(x.slice(0, D), sigma, 1);
      expect(relativeL2(batched.subarray(0, D), alone)).toBeLessThan(tolerance);
      const e = await editor();
      const [first] = await e.edit([requests[0]!]);
      const both = await e.edit(requests);
      expect(imageDiff(both[0]!, first!)).toBeLessThanOrEqual(1);
    });

    it("is deterministic per seed, with the noise seed and the LoRA-init seed apart", async () => {
      const a = await editor({ noiseSeed: 5 });
      const b = await editor({ noiseSeed: 6 });
      const [a1] = await a.edit([requests[0]!]);
      const [a2] = await a.edit([requests[0]!]);
      const [b1] = await b.edit([requests[0]!]);
      expect(imageDiff(a1!, a2!)).toBe(0);
      expect(imageDiff(a1!, b1!)).toBeGreaterThan(0);
      // An adapter with a LoRA of its own (capabilities.builtInLora) starts training from it; a fresh LoRA
      // (a loraConfig) is what initSeed seeds.
      const fresh: AdapterLoadOptions = adapter.capabilities.builtInLora ? { loraConfig: {} } : {};
      const p1 = await adapter.loadPolicy!({ ...options, ...fresh, initSeed: 1 });
      const p2 = await adapter.loadPolicy!({ ...options, ...fresh, initSeed: 2 });
      try {
        const [i1, i1again, i2] = [p1.initialParameters(), p1.initialParameters(), p2.initialParameters()];
        expect(i1again).toEqual(i1);
        expect(Object.keys(i2)).toEqual(Object.keys(i1));
        expect(i2).not.toEqual(i1);
        // PEFT's init: B = 0, so every seed starts at the base model.
        for (const [k, v] of Object.entries(i1))
          if (k.endsWith(".lora_B.weight")) expect(v.every((x) => x === 0)).toBe(true);
      } finally {
        await (p1 as { dispose?(): Promise<void> }).dispose?.();
        await (p2 as { dispose?(): Promise<void> }).dispose?.();
      }
    });

    it("exports a LoRA that loads back exactly; B = 0 is the base model; loraScale s is s·B", async () => {
      if (!policy.exportLora) throw new Error(`adapter "${adapter.name}"'s policy cannot export a LoRA`);
      const theta = withRandomB(policy.initialParameters(), 4, 0.2);
      const dirs = { theta: join(tmp, "theta"), double: join(tmp, "double"), zero: join(tmp, "zero") };
      for (const d of Object.values(dirs)) await mkdir(d);
      await policy.exportLora(theta, dirs.theta);
      await policy.exportLora(scaleB(theta, 2), dirs.double);
      await policy.exportLora(scaleB(theta, 0), dirs.zero);

      const resumed = await adapter.loadPolicy!({ ...options, lora: dirs.theta });
      try {
        expect(resumed.initialParameters()).toEqual(theta);
      } finally {
        await (resumed as { dispose?(): Promise<void> }).dispose?.();
      }

      const one = [requests[0]!];
      // The base model: no LoRA, or an adapter's own LoRA at scale 0.
      const [base] = await (await editor(adapter.capabilities.builtInLora ? { loraScale: 0 } : {})).edit(one);
      const [zero] = await (await editor({ lora: dirs.zero })).edit(one);
      const [tuned] = await (await editor({ lora: dirs.theta })).edit(one);
      const [scaled] = await (await editor({ lora: dirs.theta, loraScale: 2 })).edit(one);
      const [doubled] = await (await editor({ lora: dirs.double })).edit(one);
      const [off] = await (await editor({ lora: dirs.theta, loraScale: 0 })).edit(one);
      expect(imageDiff(zero!, base!)).toBe(0);
      expect(imageDiff(off!, base!)).toBe(0);
      expect(imageDiff(tuned!, base!)).toBeGreaterThan(1);
      expect(imageDiff(scaled!, doubled!)).toBeLessThanOrEqual(1);
      expect(imageDiff(scaled!, tuned!)).toBeGreaterThan(1);
    });

    it("checkpoints per block where it declares it: the same loss and gradients, fewer activations alive", async () => {
      const recompute = { ...options, recompute: true };
      if (!adapter.capabilities.recompute) {
        expect(() => checkAdapter(adapter, recompute, "train")).toThrow(/cannot checkpoint/);
        return;
      }
      expect(() => checkAdapter(adapter, recompute, "train")).not.toThrow();
      const checkpointed = await adapter.loadPolicy!(recompute);
      try {
        const theta = withRandomB(policy.initialParameters(), 5);
        const old = withRandomB(policy.initialParameters(), 6);
        const B = requests.length;
        const D = policy.latentSize(requests[0]!);
        const sigmas = policy.sigmas(requests);
        const rng = new Rng(8);
        const batch = {
          requests,
          x0: rng.normals(B * D),
          noise: rng.normals(B * D),
          t: Float64Array.from({ length: B }, (_, i) => sigmas[1 + (i % (sigmas.length - 2))]!),
          advantages: Float64Array.from({ length: B }, (_, i) => (i % 2 ? -0.9 : 1.1)),
          validMask: new Uint8Array(B).fill(1),
          settings: DEFAULT_NFT_SETTINGS,
        };
        const plain = await policy.lossAndGradients(batch, theta, old);
        const ckpt = await checkpointed.lossAndGradients(batch, theta, old);
        expect(plain.klLoss).toBeGreaterThan(0);
        // The same ops on the same values; only onnxruntime's scheduling of a differently shaped graph may differ.
        expect(Math.abs(ckpt.loss - plain.loss)).toBeLessThanOrEqual(tolerance * Math.abs(plain.loss));
        expect(Math.abs(ckpt.klLoss - plain.klLoss)).toBeLessThanOrEqual(tolerance * plain.klLoss);
        expect(Object.keys(ckpt.gradients).sort()).toEqual(Object.keys(plain.gradients).sort());
        for (const [k, g] of Object.entries(plain.gradients))
          expect(relativeL2(ckpt.gradients[k]!, g), k).toBeLessThanOrEqual(tolerance);
        // Where the policy exposes its graphs, the checkpointed training step keeps fewer activations alive.
        type Graphs = { graphs?(r: EditRequest, n?: number): { training: BuiltGraph } };
        const graphsOf = (p: unknown) => (p as Graphs).graphs?.bind(p);
        const [a, b] = [graphsOf(policy), graphsOf(checkpointed)];
        if (a && b) {
          const peak = (g: BuiltGraph) => planMemory(g.graph, g.outputs).peakActivationBytes;
          expect(peak(b(requests[0]!, B).training)).toBeLessThan(peak(a(requests[0]!, B).training));
        }
      } finally {
        await (checkpointed as { dispose?(): Promise<void> }).dispose?.();
      }
    });

    it("computes in every dtype it declares: the float32 velocity within that dtype's precision, a finite step", async () => {
      // Relative L2 against float32: loose enough for a few blocks of rounding, tight enough that a wrong cast or
      // a lost LoRA (errors of order 1) fails. bfloat16 keeps 8 bits of mantissa, and the FLUX and Qwen-Image
      // transformers form σ·1000 in the compute dtype as diffusers does (500 ± 2 in bfloat16), so its timestep
      // embedding alone moves the tiny FLUX-Kontext replica's velocity by 4.0e-2 (float16: 6.1e-4; Qwen-Image-Edit
      // 4.2e-3 and 3.5e-4). A float16 text condition read as float32 bits once gave 8e-2 here.
      const bound: Record<string, number> = { float16: 5e-3, bfloat16: 1e-1 };
      const others = adapter.capabilities.dtypes.filter((d) => d !== "float32");
      const theta = withRandomB(policy.initialParameters(), 9);
      const old = withRandomB(policy.initialParameters(), 10);
      const B = requests.length;
      const D = policy.latentSize(requests[0]!);
      const sigmas = policy.sigmas(requests);
      const rng = new Rng(12);
      const x = rng.normals(B * D);
      const want = await policy.velocity(requests, theta)(x, sigmas[1]!, 1);
      const batch = {
        requests,
        x0: rng.normals(B * D),
        noise: rng.normals(B * D),
        t: new Float64Array(B).fill(sigmas[1]!),
        advantages: Float64Array.from({ length: B }, (_, i) => (i % 2 ? -0.7 : 1.3)),
        validMask: new Uint8Array(B).fill(1),
        settings: DEFAULT_NFT_SETTINGS,
      };
      const plain = await policy.lossAndGradients(batch, theta, old);
      for (const dtype of others) {
        expect(() => checkAdapter(adapter, { ...options, dtype }, "train")).not.toThrow();
        const low = await adapter.loadPolicy!({ ...options, dtype });
        try {
          const got = await low.velocity(requests, theta)(x, sigmas[1]!, 1);
          const err = relativeL2(got, want);
          expect(err, dtype).toBeGreaterThan(0);
          expect(err, dtype).toBeLessThan(bound[dtype]!);
          const step = await low.lossAndGradients(batch, theta, old);
          expect(
            Math.abs(step.policyLoss - plain.policyLoss) / Math.abs(plain.policyLoss),
            dtype,
          ).toBeLessThan(10 * bound[dtype]!);
          for (const [k, g] of Object.entries(step.gradients)) expect(g.every(Number.isFinite), k).toBe(true);
        } finally {
          await (low as { dispose?(): Promise<void> }).dispose?.();
        }
      }
    });

    it("decodes latents to images of its bucket", async () => {
      const D = policy.latentSize(requests[0]!);
      const images = await policy.decode(new Float32Array(requests.length * D), requests);
      expect(images).toHaveLength(requests.length);
      for (const img of images) expect(img.data.length).toBe(img.width * img.height * 3);
    });
  });
}
