import { closeDefaultRuntime, compile } from "@edit-r1/engine";
import { afterAll, describe, expect, it } from "vitest";
import { AdamW, DEFAULT_ADAMW } from "./adamw.js";
import { emaDecay } from "./decay.js";
import { buildUpdateGraph } from "./device-training.js";
import { Ema } from "./ema.js";
import { clipGradNorm, cloneParams, type ParamSet, softUpdate } from "./params.js";
import { Rng } from "./rng.js";

afterAll(() => closeDefaultRuntime());

const shapes = { "a.lora_A.weight": [4, 6], "a.lora_B.weight": [6, 4], bias: [5] };

function random(rng: Rng, scale: number): ParamSet {
  return Object.fromEntries(
    Object.entries(shapes).map(([k, s]) => [k, rng.normals(s[0]! * (s[1] ?? 1)).map((x) => x * scale)]),
  );
}

/**
 * The optimizer step as a graph (what device-resident training runs) against the trainer's host code on the
 * same state: clipGradNorm, AdamW.update, Ema.update and softUpdate. The graph computes in float32, the host in
 * float64 per element: they agree to a few float32 ulps (tolerance 1e-6 relative to each tensor's largest value).
 */
describe("buildUpdateGraph", () => {
  for (const [label, maxGradNorm] of [
    ["clipping", 0.5],
    ["not clipping", 1e6],
  ] as const)
    it(`matches clip + AdamW + EMA + old-policy update on the host (${label})`, async () => {
      const rng = new Rng(11);
      const settings = { ...DEFAULT_ADAMW, lr: 1e-2, weightDecay: 0.01 };
      const params = random(rng, 0.3);
      const oldParams = random(rng, 0.3);
      const ema = random(rng, 0.3);
      const m = random(rng, 0.01);
      const v = Object.fromEntries(
        Object.entries(random(rng, 0.01)).map(([k, x]) => [k, x.map((y) => y * y)]),
      );
      const acc = random(rng, 1);
      const adamStep = 7; // the update after 6 earlier ones
      const [d, eta] = [emaDecay(6, 0.9), 0.3];

      // Host.
      const hostParams = cloneParams(params);
      const grads = cloneParams(acc);
      const hostNorm = clipGradNorm(grads, maxGradNorm);
      const adam = new AdamW(hostParams, settings);
      adam.loadState({ step: adamStep - 1, settings, m: cloneParams(m), v: cloneParams(v) });
      adam.update(hostParams, grads);
      const hostEma = new Ema(ema, 0.9);
      hostEma.update(hostParams, 6);
      const hostOld = cloneParams(oldParams);
      softUpdate(hostOld, hostParams, eta);
      const hostState = adam.getState();

      // Graph.
      const { graph, outputs } = buildUpdateGraph(shapes, settings, maxGradNorm);
      const session = await compile(graph, { outputs });
      const feeds: Record<string, Float32Array> = {};
      for (const [part, set] of Object.entries({ params, oldParams, ema, m, v, acc }))
        for (const [k, x] of Object.entries(set)) feeds[`${part}/${k}`] = x;
      const { stepSize, bc2Sqrt } = {
        stepSize: settings.lr / (1 - settings.beta1 ** adamStep),
        bc2Sqrt: Math.sqrt(1 - settings.beta2 ** adamStep),
      };
      const out = await session.run({
        ...feeds,
        stepSize: Float32Array.of(stepSize),
        bc2Sqrt: Float32Array.of(bc2Sqrt),
        emaDecay: Float32Array.of(d),
        oldEta: Float32Array.of(eta),
      });
      await session.dispose();

      const gradNorm = (out.gradNorm as Float32Array)[0]!;
      expect(Math.abs(gradNorm - hostNorm) / hostNorm).toBeLessThan(1e-6);
      if (maxGradNorm < 1) expect(hostNorm).toBeGreaterThan(maxGradNorm);
      const want: Record<string, ParamSet> = {
        params: hostParams,
        oldParams: hostOld,
        ema: hostEma.params,
        m: hostState.m,
        v: hostState.v,
      };
      for (const [part, set] of Object.entries(want))
        for (const [k, x] of Object.entries(set)) {
          const got = out[`next.${part}.${k}`] as Float32Array;
          const scale = Math.max(...Array.from(x, Math.abs));
          let worst = 0;
          for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(got[i]! - x[i]!));
          expect(worst / scale, `${part}/${k}`).toBeLessThan(1e-6);
        }
      // θ moved: the check is not of an update that did nothing.
      expect(hostParams.bias).not.toEqual(params.bias);
      for (const k of Object.keys(shapes))
        expect(Array.from(out[`next.acc.${k}`] as Float32Array)).toEqual(Array.from(acc[k]!, () => 0));
    });
});
