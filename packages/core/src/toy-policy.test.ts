import { describe, expect, it } from "vitest";
import { DEFAULT_NFT_SETTINGS, nftLoss } from "./nft-loss.js";
import { cloneParams } from "./params.js";
import { Rng } from "./rng.js";
import { ToyFlowPolicy, ToyRegionReward, toyPointOf } from "./toy-policy.js";
import type { NftBatch } from "./trainable-policy.js";

const blank = { width: 1, height: 1, data: new Uint8Array(3) };

describe("ToyFlowPolicy", () => {
  it("backpropagates the NFT gradient exactly (finite differences, weights held constant)", async () => {
    const policy = new ToyFlowPolicy({ hidden: 6, seed: 4 });
    const rng = new Rng(8);
    const params = policy.initialParameters();
    for (const p of Object.values(params))
      for (let i = 0; i < p.length; i++) p[i] = p[i]! + 0.3 * rng.normal();
    const oldParams = policy.initialParameters();
    const requests = ["a", "b", "c"].map((instruction, i) => ({ key: `${i}`, instruction, source: blank }));
    const batch: NftBatch = {
      requests,
      x0: rng.normals(6),
      noise: rng.normals(6),
      t: Float64Array.from([0.3, 0.6, 0.9]),
      advantages: Float64Array.from([1, -2, 0.5]),
      validMask: Uint8Array.from([1, 1, 1]),
      settings: { ...DEFAULT_NFT_SETTINGS, klWeight: 0.1 },
    };
    const { gradients } = await policy.lossAndGradients(batch, params, oldParams);
    // d loss/d θ = (d loss/d v_θ) · (d v_θ/d θ): check the chain rule through the MLP with the
    // upstream gradient fixed, i.e. finite differences of Σ g·v_θ(θ).
    const xt = new Float64Array(6);
    for (let b = 0; b < 3; b++)
      for (let d = 0; d < 2; d++)
        xt[b * 2 + d] = (1 - batch.t[b]!) * batch.x0[b * 2 + d]! + batch.t[b]! * batch.noise[b * 2 + d]!;
    const upstream = nftLoss({
      ...batch.settings,
      x0: batch.x0,
      noise: batch.noise,
      t: batch.t,
      vTheta: await velocities(params),
      vOld: await velocities(oldParams),
      vRef: await velocities(policy.initialParameters()),
      advantages: batch.advantages,
    }).gradVTheta;
    async function velocities(p: typeof params): Promise<Float64Array> {
      const out = new Float64Array(6);
      for (let b = 0; b < 3; b++) {
        const v = await policy.velocity([requests[b]!], p)(
          Float32Array.from(xt.subarray(b * 2, b * 2 + 2)),
          batch.t[b]!,
          0,
        );
        out.set(v, b * 2);
      }
      return out;
    }
    const h = 1e-3;
    for (const name of ["mlp.0.weight", "mlp.2.bias", "mlp.4.weight"]) {
      for (const i of [0, 3]) {
        const plus = cloneParams(params);
        const minus = cloneParams(params);
        plus[name]![i] = plus[name]![i]! + h;
        minus[name]![i] = minus[name]![i]! - h;
        const vp = await velocities(plus);
        const vm = await velocities(minus);
        let fd = 0;
        for (let k = 0; k < 6; k++) fd += (upstream[k]! * (vp[k]! - vm[k]!)) / (2 * h);
        // float32 parameters and velocities bound the agreement (gradients here are ~0.05–0.5).
        expect(Math.abs(gradients[name]![i]! - fd)).toBeLessThan(1e-4);
      }
    }
  });

  it("decodes points to images the toy reward reads back", async () => {
    const policy = new ToyFlowPolicy();
    const req = { key: "k", instruction: "x", source: blank };
    const [img] = await policy.decode(Float32Array.from([1.25, -0.5]), [req]);
    expect(toyPointOf(img!)).toEqual([1.25, -0.5]);
    const reward = new ToyRegionReward(0.5, 2);
    const [out] = await reward.score([{ ...req, edited: img! }]);
    expect(out!.score).toBeCloseTo(1 / (1 + Math.exp(-1.5)), 12);
  });
});
