import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { evaluate, Graph, writeSafetensors } from "@edit-r1/engine";
import { fixturesOfKind, readAllFloat32, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fluxBflWeightSource, fluxDiffusersToBfl } from "./flux-bfl-weights.js";
import { parseFluxTransformerConfig } from "./flux-config.js";
import { buildFluxTransformer, fluxTransformerInputs } from "./flux-transformer.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { WeightError } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Relative L2 to the fp32 diffusers reference that fp32 rounding explains (the float64 interpreter on the
 * diffusers layout measures 7.7e-7 on flux-kontext-transformer, at most 9.2e-7 on held-out fixtures; see
 * flux-transformer.test.ts).
 */
const FP32_PARITY = 3e-6;

const fixtures = fixturesOfKind("flux-transformer");

it("finds at least one flux-transformer fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

describe.each(fixtures.map((f) => [f.name, f] as const))(
  "BFL single-file layout, fixture %s",
  (_, fixture) => {
    const config = parseFluxTransformerConfig(fixture.meta.config);
    let tmp: string;
    let bflPath: string;
    let io: Tensors;
    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), "flux-bfl-"));
      bflPath = join(tmp, "flux1-tiny.safetensors");
      const bfl = fluxDiffusersToBfl(await readAllFloat32(fixture.weightsPath));
      await writeSafetensors(
        bflPath,
        new Map([...bfl].map(([n, t]) => [n, { dtype: "float32" as const, shape: t.shape, data: t.data }])),
      );
      io = await readFixtureIo(fixture);
    });
    afterAll(async () => {
      await rm(tmp, { recursive: true, force: true });
    });

    it("maps every BFL key and gives output identical to the diffusers layout", async () => {
      const diffusers = await openSafetensorsWeights(fixture.weightsPath);
      const mapped = fluxBflWeightSource(await openSafetensorsWeights(bflPath));
      expect(mapped.unmapped).toEqual([]);
      expect([...mapped.names()].sort()).toEqual([...diffusers.names()].sort());
      // Splits stay byte ranges of the BFL file: no copy.
      const q = mapped.get("transformer_blocks.0.attn.to_k.weight")!;
      expect("path" in q.data && q.data.path).toBe(bflPath);

      const hs = io.get("in.hidden_states")!.shape;
      const sizes = {
        batch: hs[0]!,
        imageTokens: hs[1]!,
        textTokens: io.get("in.encoder_hidden_states")!.shape[1]!,
      };
      const feeds = Object.fromEntries(
        [...io].filter(([n]) => n.startsWith("in.")).map(([n, t]) => [n.slice(3), t.data]),
      );
      const outputs = [diffusers, mapped].map((w) => {
        const g = new Graph();
        const { sample } = buildFluxTransformer(g, config, w, fluxTransformerInputs(g, config, sizes));
        return evaluate(g, feeds, [sample])[0]!;
      });
      expect(outputs[1]).toEqual(outputs[0]);
      const err = relativeL2(outputs[1]!, io.get("out.sample")!.data);
      console.log(`${fixture.name}: BFL layout, interpreter relative L2 = ${err.toExponential(2)}`);
      expect(err).toBeLessThan(FP32_PARITY);
    });

    it("converts every block the weights have, and names a diffusers key it lacks", async () => {
      const weights = await readAllFloat32(fixture.weightsPath);
      const bfl = fluxDiffusersToBfl(weights);
      const last = (prefix: string, n: number) => [`${prefix}.${n - 1}.`, `${prefix}.${n}.`];
      for (const [prefix, n] of [
        ["double_blocks", config.numLayers],
        ["single_blocks", config.numSingleLayers],
      ] as const) {
        const [present, absent] = last(prefix, n);
        expect([...bfl.keys()].some((k) => k.startsWith(present!))).toBe(true);
        expect([...bfl.keys()].some((k) => k.startsWith(absent!))).toBe(false);
      }
      weights.delete("norm_out.linear.bias");
      expect(() => fluxDiffusersToBfl(weights)).toThrow(WeightError);
      expect(() => fluxDiffusersToBfl(weights)).toThrow(/norm_out\.linear\.bias/);
    });

    it("names the fused key when it does not split", async () => {
      const source = await openSafetensorsWeights(bflPath);
      const broken = fluxBflWeightSource({
        ...source,
        get: (n) => {
          const e = source.get(n);
          return e && n === "double_blocks.0.img_attn.qkv.bias" ? { ...e, shape: [5] } : e;
        },
        names: () => source.names(),
      });
      expect(() => broken.get("transformer_blocks.0.attn.to_q.bias")).toThrow(WeightError);
      expect(() => broken.get("transformer_blocks.0.attn.to_q.bias")).toThrow(
        /double_blocks\.0\.img_attn\.qkv\.bias/,
      );
    });
  },
);
