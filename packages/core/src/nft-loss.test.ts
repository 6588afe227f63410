import { describe, expect, it } from "vitest";
import { advantageToR, type NftLossInput, nftLoss } from "./nft-loss.js";
import { Rng } from "./rng.js";

const B = 3;
const D = 5;

function randomInput(seed: number): NftLossInput & { vTheta: Float64Array } {
  const rng = new Rng(seed);
  const arr = (n: number) => Float64Array.from({ length: n }, () => rng.normal());
  return {
    x0: arr(B * D),
    noise: arr(B * D),
    t: Float64Array.from({ length: B }, () => 0.1 + 0.8 * rng.next()),
    vTheta: arr(B * D),
    vOld: arr(B * D),
    vRef: arr(B * D),
    advantages: Float64Array.from([1.3, -0.7, 6.2]),
    validMask: Uint8Array.from([1, 0, 1]),
    beta: 0.7,
    klWeight: 0.05,
    advClipMax: 5,
  };
}

/**
 * The loss written out independently from the formulas, with the adaptive weights optionally frozen
 * at given values, for finite differences.
 */
function referenceLoss(inp: ReturnType<typeof randomInput>, v: Float64Array, frozen?: number[][]): number {
  const beta = inp.beta!;
  let policy = 0;
  let kl = 0;
  let m = 0;
  for (let b = 0; b < B; b++) {
    const t = inp.t[b]!;
    const r = Math.min(Math.max(Math.min(Math.max(inp.advantages[b]!, -5), 5) / 10 + 0.5, 0), 1);
    const ep: number[] = [];
    const en: number[] = [];
    let sk = 0;
    for (let d = 0; d < D; d++) {
      const i = b * D + d;
      const xt = (1 - t) * inp.x0[i]! + t * inp.noise[i]!;
      ep.push(xt - t * (beta * v[i]! + (1 - beta) * inp.vOld[i]!) - inp.x0[i]!);
      en.push(xt - t * ((1 + beta) * inp.vOld[i]! - beta * v[i]!) - inp.x0[i]!);
      sk += (v[i]! - inp.vRef[i]!) ** 2;
    }
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    const wp = frozen ? frozen[b]![0]! : Math.max(mean(ep.map(Math.abs)), 1e-5);
    const wn = frozen ? frozen[b]![1]! : Math.max(mean(en.map(Math.abs)), 1e-5);
    const lp = mean(ep.map((e) => e * e)) / wp;
    const ln = mean(en.map((e) => e * e)) / wn;
    const mask = inp.validMask![b]!;
    policy += mask * (r * lp + (1 - r) * ln);
    kl += (mask * sk) / D;
    m += mask;
  }
  return (policy * 5) / beta / m + (inp.klWeight! * kl) / m;
}

function weightsAt(inp: ReturnType<typeof randomInput>): number[][] {
  const out: number[][] = [];
  for (let b = 0; b < B; b++) {
    const t = inp.t[b]!;
    let ap = 0;
    let an = 0;
    for (let d = 0; d < D; d++) {
      const i = b * D + d;
      const xt = (1 - t) * inp.x0[i]! + t * inp.noise[i]!;
      const vp = inp.beta! * inp.vTheta[i]! + (1 - inp.beta!) * inp.vOld[i]!;
      const vn = (1 + inp.beta!) * inp.vOld[i]! - inp.beta! * inp.vTheta[i]!;
      ap += Math.abs(xt - t * vp - inp.x0[i]!);
      an += Math.abs(xt - t * vn - inp.x0[i]!);
    }
    out.push([ap / D, an / D]);
  }
  return out;
}

function finiteDifference(f: (v: Float64Array) => number, v: Float64Array): Float64Array {
  const g = new Float64Array(v.length);
  const h = 1e-6;
  for (let i = 0; i < v.length; i++) {
    const p = Float64Array.from(v);
    const q = Float64Array.from(v);
    p[i] = p[i]! + h;
    q[i] = q[i]! - h;
    g[i] = (f(p) - f(q)) / (2 * h);
  }
  return g;
}

describe("nftLoss", () => {
  it("matches an independent write-out of the formulas", () => {
    const inp = randomInput(1);
    expect(nftLoss(inp).loss).toBeCloseTo(referenceLoss(inp, inp.vTheta), 12);
  });

  it("gives the stop-gradient derivative (adaptive weights held constant)", () => {
    const inp = randomInput(2);
    const frozen = weightsAt(inp);
    const fd = finiteDifference((v) => referenceLoss(inp, v, frozen), inp.vTheta);
    const g = nftLoss(inp).gradVTheta;
    for (let i = 0; i < g.length; i++) expect(g[i]).toBeCloseTo(fd[i]!, 7);
    // The masked-out sample gets no gradient.
    for (let d = 0; d < D; d++) expect(g[D + d]).toBe(0);
  });

  it("gives the full derivative with differentiateWeights", () => {
    const inp = randomInput(3);
    const fd = finiteDifference((v) => referenceLoss(inp, v), inp.vTheta);
    const g = nftLoss({ ...inp, differentiateWeights: true }).gradVTheta;
    for (let i = 0; i < g.length; i++) expect(g[i]).toBeCloseTo(fd[i]!, 6);
  });

  it("is zero with zero gradient when every sample is masked", () => {
    const out = nftLoss({ ...randomInput(4), validMask: [0, 0, 0] });
    expect(out.loss).toBe(0);
    expect(out.gradVTheta.every((g) => g === 0)).toBe(true);
  });

  it("reduces to the paper's β = 1 policies: v⁺ = v_θ, v⁻ = 2·v_old − v_θ", () => {
    const inp = { ...randomInput(5), beta: 1, klWeight: 0, validMask: [1, 1, 1], advantages: [5, 5, 5] };
    const out = nftLoss(inp);
    // r = 1: only the positive term, which is the x0-space error of v_θ itself.
    for (let b = 0; b < B; b++) {
      let sq = 0;
      let ab = 0;
      for (let d = 0; d < D; d++) {
        const i = b * D + d;
        const e = inp.t[b]! * (inp.noise[i]! - inp.x0[i]! - inp.vTheta[i]!);
        sq += e * e;
        ab += Math.abs(e);
      }
      expect(out.positiveLoss[b]).toBeCloseTo(sq / ab, 12);
    }
    expect(out.loss).toBeCloseTo(
      (5 * (out.positiveLoss[0]! + out.positiveLoss[1]! + out.positiveLoss[2]!)) / 3,
      12,
    );
  });

  it("rejects mismatched shapes with the offending input named", () => {
    expect(() => nftLoss({ ...randomInput(6), vOld: new Float64Array(3) })).toThrow(/vOld has 3 values/);
    expect(() => nftLoss({ ...randomInput(6), advantages: [1] })).toThrow(/advantages has 1 values/);
    expect(() => nftLoss({ ...randomInput(6), beta: 0 })).toThrow(/beta must be positive/);
  });
});

describe("advantageToR", () => {
  it("clips and maps to [0, 1] per mode", () => {
    expect(advantageToR(0)).toBe(0.5);
    expect(advantageToR(2.5)).toBe(0.75);
    expect(advantageToR(-12)).toBe(0);
    expect(advantageToR(-2.5, 5, "positive_only")).toBe(0.5);
    expect(advantageToR(2.5, 5, "negative_only")).toBe(0.5);
    expect(advantageToR(0.01, 5, "binary")).toBe(0.6);
    expect(advantageToR(-0.01, 5, "binary")).toBe(0.4);
    expect(advantageToR(3, 5, "one_only")).toBe(0.6);
    expect(advantageToR(-3, 5, "one_only")).toBe(0.5);
  });
});
