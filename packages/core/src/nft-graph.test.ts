import { compile, type DType, evaluate, Graph, grad, Runtime } from "@edit-r1/engine";
import { describe, expect, it } from "vitest";
import { ConfigError, ShapeError } from "./errors.js";
import { buildNftObjective, type NftObjectiveSettings } from "./nft-graph.js";
import { advantageToR, nftLoss } from "./nft-loss.js";
import { Rng } from "./rng.js";

const B = 4;
const LATENT = [3, 2];
const D = 6;

interface Case {
  x0: Float64Array;
  noise: Float64Array;
  t: Float64Array;
  vTheta: Float64Array;
  vOld: Float64Array;
  vRef: Float64Array;
  advantages: Float64Array;
  validMask: Uint8Array;
}

function randomCase(seed: number, floorSample = true): Case {
  const rng = new Rng(seed);
  const arr = (n: number) => Float64Array.from({ length: n }, () => rng.normal());
  const c: Case = {
    x0: arr(B * D),
    noise: arr(B * D),
    t: Float64Array.from({ length: B }, () => 0.05 + 0.9 * rng.next()),
    vTheta: arr(B * D),
    vOld: arr(B * D),
    vRef: arr(B * D),
    advantages: Float64Array.from([1.3, -0.7, 6.2, -2.4]),
    validMask: Uint8Array.from([1, 0, 1, 1]),
  };
  // Sample 3: v_θ = v_old = ε − x0 makes both x0-space errors ~0, so the weight floor is active there.
  for (let d = 0; d < (floorSample ? D : 0); d++) {
    const i = 3 * D + d;
    c.vTheta[i] = c.noise[i]! - c.x0[i]!;
    c.vOld[i] = c.vTheta[i]!;
  }
  return c;
}

/** The objective over graph inputs of `dtype`, with d loss/d v_θ. */
function buildGraph(dtype: DType, settings: NftObjectiveSettings, options: { givenXt?: boolean } = {}) {
  const g = new Graph("nft-objective-test");
  const full = [B, ...LATENT];
  const x0 = g.input("x0", dtype, full);
  const noise = g.input("noise", dtype, full);
  const t = g.input("t", dtype, [B]);
  const vTheta = g.input("vTheta", dtype, full);
  const vOld = g.input("vOld", dtype, full);
  const vRef = g.input("vRef", dtype, full);
  const r = g.input("r", dtype, [B]);
  const mask = g.input("mask", dtype, [B]);
  let xt: ReturnType<typeof g.input> | undefined;
  if (options.givenXt) xt = g.input("xt", dtype, full);
  const obj = buildNftObjective(
    g,
    xt ? { x0, xt, t, vTheta, vOld, vRef, r, mask } : { x0, noise, t, vTheta, vOld, vRef, r, mask },
    settings,
  );
  const [gradVTheta, gradVOld, gradVRef] = grad(obj.loss, [vTheta, vOld, vRef]);
  return { g, obj, gradVTheta: gradVTheta!, gradVOld: gradVOld!, gradVRef: gradVRef! };
}

function feedsOf(c: Case, settings: { advClipMax: number }, validMask = c.validMask) {
  const xt = c.x0.map((x, i) => (1 - c.t[Math.floor(i / D)]!) * x + c.t[Math.floor(i / D)]! * c.noise[i]!);
  return {
    x0: c.x0,
    noise: c.noise,
    xt,
    t: c.t,
    vTheta: c.vTheta,
    vOld: c.vOld,
    vRef: c.vRef,
    r: Float64Array.from(c.advantages, (a) => advantageToR(a, settings.advClipMax)),
    mask: Float64Array.from(validMask),
  };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number): void {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(actual[i]! - expected[i]!)).toBeLessThanOrEqual(relTol * Math.max(scale, 1e-12));
  }
}

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    err = Math.max(err, Math.abs(actual[i]! - expected[i]!));
  }
  return err / scale;
}

const SETTINGS = { beta: 0.7, klWeight: 0.3, advClipMax: 5 };

describe("buildNftObjective (interpreter, float64)", () => {
  const cases: [string, typeof SETTINGS][] = [
    ["β 0.7, strong KL", SETTINGS],
    ["Edit-R1 defaults (β 1, KL 1e-4)", { beta: 1, klWeight: 1e-4, advClipMax: 5 }],
    ["β 0.1, advClipMax 3", { beta: 0.1, klWeight: 0.02, advClipMax: 3 }],
  ];
  for (const [label, settings] of cases) {
    it(`matches nftLoss and its stop-gradient d/dv_θ (${label})`, () => {
      for (const seed of [1, 2, 3]) {
        const c = randomCase(seed);
        const { g, obj, gradVTheta, gradVOld, gradVRef } = buildGraph("float64", settings);
        const feeds = feedsOf(c, settings);
        const [loss, policyLoss, klLoss, gv, go, gr] = evaluate(g, feeds, [
          obj.loss,
          obj.policyLoss,
          obj.klLoss,
          gradVTheta,
          gradVOld,
          gradVRef,
        ]);
        const ref = nftLoss({ ...c, ...settings });
        expect(loss!.length).toBe(1);
        expectClose(loss!, [ref.loss], 1e-9);
        expectClose(policyLoss!, [ref.policyLoss], 1e-9);
        expectClose(klLoss!, [ref.klLoss], 1e-9);
        expectClose(gv!, ref.gradVTheta, 1e-9);
        // v_old and v_ref are targets: no gradient reaches them.
        expect(Array.from(go!).every((v) => v === 0)).toBe(true);
        expect(Array.from(gr!).every((v) => v === 0)).toBe(true);
      }
    });
  }

  it("differentiates through the adaptive weights when asked, like nftLoss", () => {
    const c = randomCase(4);
    const settings = { ...SETTINGS, differentiateWeights: true };
    const { g, obj, gradVTheta } = buildGraph("float64", settings);
    const [loss, gv] = evaluate(g, feedsOf(c, settings), [obj.loss, gradVTheta]);
    const ref = nftLoss({ ...c, ...settings });
    expectClose(loss!, [ref.loss], 1e-9);
    expectClose(gv!, ref.gradVTheta, 1e-9);
    // It is a different gradient from the default one, so the option is really wired.
    const held = nftLoss({ ...c, ...SETTINGS }).gradVTheta;
    expect(Math.max(...gv!.map((v, i) => Math.abs(v - held[i]!)))).toBeGreaterThan(1e-6);
  });

  it("gives the same result from a given x_t as from the noise", () => {
    const c = randomCase(5);
    const fromNoise = buildGraph("float64", SETTINGS);
    const fromXt = buildGraph("float64", SETTINGS, { givenXt: true });
    const feeds = feedsOf(c, SETTINGS);
    const [a, ga] = evaluate(fromNoise.g, feeds, [fromNoise.obj.loss, fromNoise.gradVTheta]);
    const [b, gb] = evaluate(fromXt.g, feeds, [fromXt.obj.loss, fromXt.gradVTheta]);
    expectClose(b!, a!, 1e-12);
    expectClose(gb!, ga!, 1e-12);
  });

  it("gives zero loss and zero gradient when every sample is masked", () => {
    const c = randomCase(6);
    const { g, obj, gradVTheta } = buildGraph("float64", SETTINGS);
    const [loss, policyLoss, klLoss, gv] = evaluate(g, feedsOf(c, SETTINGS, new Uint8Array(B)), [
      obj.loss,
      obj.policyLoss,
      obj.klLoss,
      gradVTheta,
    ]);
    expect([loss![0], policyLoss![0], klLoss![0]]).toEqual([0, 0, 0]);
    expect(Array.from(gv!).every((v) => v === 0)).toBe(true);
  });

  it("rejects mismatched shapes, dtypes and settings with messages naming the input", () => {
    const g = new Graph();
    const x0 = g.input("x0", "float32", [B, D]);
    const t = g.input("t", "float32", [B]);
    const good = { x0, noise: x0, t, vTheta: x0, vOld: x0, vRef: x0, r: t, mask: t };
    expect(() => buildNftObjective(g, { ...good, vOld: g.input("bad", "float32", [B, D + 1]) })).toThrow(
      /vOld is float32\[4,7\]/,
    );
    expect(() => buildNftObjective(g, { ...good, r: g.input("r64", "float64", [B]) })).toThrow(ShapeError);
    expect(() => buildNftObjective(g, { ...good, mask: x0 })).toThrow(/mask .* expected \[4\]/);
    expect(() => buildNftObjective(g, { ...good, noise: undefined })).toThrow(/either xt or noise/);
    expect(() => buildNftObjective(g, good, { beta: 0 })).toThrow(ConfigError);
    expect(() => buildNftObjective(new Graph(), good)).toThrow(/another graph/);
  });
});

describe("buildNftObjective (onnxruntime, float32)", () => {
  it("matches nftLoss within float32 rounding", async () => {
    const runtime = new Runtime();
    try {
      const { g, obj, gradVTheta } = buildGraph("float32", SETTINGS);
      const session = await compile(g, {
        outputs: { loss: obj.loss, policyLoss: obj.policyLoss, klLoss: obj.klLoss, grad: gradVTheta },
        runtime,
        threads: 1,
      });
      let worst = 0;
      for (const seed of [7, 8]) {
        // No floor sample here: in float32 its x0-space errors are pure rounding (~1e-7), which the 1e-5
        // floor amplifies into gradient noise of ~1e-3 relative, a property of float32, not of the graph.
        const c = randomCase(seed, false);
        const f64 = feedsOf(c, SETTINGS);
        const feeds: Record<string, Float32Array> = {};
        for (const [k, v] of Object.entries(f64)) feeds[k] = Float32Array.from(v);
        delete feeds.xt;
        const out = await session.run(feeds);
        // Compare with the reference on the same float32-rounded inputs, so only the arithmetic differs.
        const rounded = Object.fromEntries(
          Object.entries(c).map(([k, v]) => [
            k,
            v instanceof Float64Array ? Float64Array.from(Float32Array.from(v)) : v,
          ]),
        ) as unknown as Case;
        const ref = nftLoss({ ...rounded, ...SETTINGS });
        // Stated tolerance: 1e-5 of the largest magnitude (float32 has ~6e-8 relative precision; sums of
        // a few dozen terms and the x0-space cancellation cost two orders of magnitude at most).
        expectClose(out.loss as Float32Array, [ref.loss], 1e-5);
        expectClose(out.policyLoss as Float32Array, [ref.policyLoss], 1e-5);
        expectClose(out.klLoss as Float32Array, [ref.klLoss], 1e-5);
        expectClose(out.grad as Float32Array, ref.gradVTheta, 1e-5);
        worst = Math.max(
          worst,
          relError(out.loss as Float32Array, [ref.loss]),
          relError(out.grad as Float32Array, ref.gradVTheta),
        );
      }
      console.log(
        `NFT objective, onnxruntime float32 vs float64 reference: worst relative error ${worst.toExponential(2)}`,
      );
      await session.dispose();
    } finally {
      await runtime.close();
    }
  });
});
