import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { evaluate, Graph, writeSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fluxBflWeightSource } from "./flux-bfl-weights.js";
import { parseFluxTransformerConfig } from "./flux-config.js";
import { buildFluxTransformer, fluxTransformerInputs } from "./flux-transformer.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { fixturesOfKind, readAllFloat32, readFixtureIo, relativeL2 } from "./test-fixtures.js";
import { WeightError } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Writes diffusers FLUX weights in the BFL single-file layout, following the key table of diffusers'
 * single-file converter read in the opposite direction: fused qkv / linear1 rows are concatenated, and
 * final_layer.adaLN_modulation.1 stores (shift, scale) where diffusers stores (scale, shift).
 */
function toBfl(d: Tensors, numLayers: number, numSingle: number): Tensors {
  const out: Tensors = new Map();
  const take = (key: string) => {
    const t = d.get(key);
    if (!t) throw new Error(`fixture lacks ${key}`);
    return t;
  };
  const cat = (keys: string[]) => {
    const parts = keys.map(take);
    return {
      shape: [parts.reduce((n, p) => n + p.shape[0]!, 0), ...parts[0]!.shape.slice(1)],
      data: Float32Array.from(parts.flatMap((p) => [...p.data])),
    };
  };
  const both = (to: string, from: string) => {
    for (const s of ["weight", "bias"]) out.set(`${to}.${s}`, take(`${from}.${s}`));
  };
  both("img_in", "x_embedder");
  both("txt_in", "context_embedder");
  both("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1");
  both("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2");
  both("vector_in.in_layer", "time_text_embed.text_embedder.linear_1");
  both("vector_in.out_layer", "time_text_embed.text_embedder.linear_2");
  if (d.has("time_text_embed.guidance_embedder.linear_1.weight")) {
    both("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1");
    both("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2");
  }
  both("final_layer.linear", "proj_out");
  for (const s of ["weight", "bias"]) {
    const t = take(`norm_out.linear.${s}`);
    const half = t.data.length / 2;
    out.set(`final_layer.adaLN_modulation.1.${s}`, {
      shape: t.shape,
      data: Float32Array.from([...t.data.subarray(half), ...t.data.subarray(0, half)]),
    });
  }
  for (let i = 0; i < numLayers; i++) {
    const b = `double_blocks.${i}`;
    const f = `transformer_blocks.${i}`;
    both(`${b}.img_mod.lin`, `${f}.norm1.linear`);
    both(`${b}.txt_mod.lin`, `${f}.norm1_context.linear`);
    both(`${b}.img_attn.proj`, `${f}.attn.to_out.0`);
    both(`${b}.txt_attn.proj`, `${f}.attn.to_add_out`);
    both(`${b}.img_mlp.0`, `${f}.ff.net.0.proj`);
    both(`${b}.img_mlp.2`, `${f}.ff.net.2`);
    both(`${b}.txt_mlp.0`, `${f}.ff_context.net.0.proj`);
    both(`${b}.txt_mlp.2`, `${f}.ff_context.net.2`);
    out.set(`${b}.img_attn.norm.query_norm.scale`, take(`${f}.attn.norm_q.weight`));
    out.set(`${b}.img_attn.norm.key_norm.scale`, take(`${f}.attn.norm_k.weight`));
    out.set(`${b}.txt_attn.norm.query_norm.scale`, take(`${f}.attn.norm_added_q.weight`));
    out.set(`${b}.txt_attn.norm.key_norm.scale`, take(`${f}.attn.norm_added_k.weight`));
    for (const s of ["weight", "bias"]) {
      out.set(`${b}.img_attn.qkv.${s}`, cat(["to_q", "to_k", "to_v"].map((m) => `${f}.attn.${m}.${s}`)));
      out.set(
        `${b}.txt_attn.qkv.${s}`,
        cat(["add_q_proj", "add_k_proj", "add_v_proj"].map((m) => `${f}.attn.${m}.${s}`)),
      );
    }
  }
  for (let i = 0; i < numSingle; i++) {
    const b = `single_blocks.${i}`;
    const f = `single_transformer_blocks.${i}`;
    both(`${b}.modulation.lin`, `${f}.norm.linear`);
    both(`${b}.linear2`, `${f}.proj_out`);
    out.set(`${b}.norm.query_norm.scale`, take(`${f}.attn.norm_q.weight`));
    out.set(`${b}.norm.key_norm.scale`, take(`${f}.attn.norm_k.weight`));
    for (const s of ["weight", "bias"]) {
      out.set(
        `${b}.linear1.${s}`,
        cat([`${f}.attn.to_q.${s}`, `${f}.attn.to_k.${s}`, `${f}.attn.to_v.${s}`, `${f}.proj_mlp.${s}`]),
      );
    }
  }
  return out;
}

describe.each(fixturesOfKind("flux-transformer").map((f) => [f.name, f] as const))(
  "BFL single-file layout, fixture %s",
  (_, fixture) => {
    const config = parseFluxTransformerConfig(fixture.meta.config);
    let tmp: string;
    let bflPath: string;
    let io: Tensors;
    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), "flux-bfl-"));
      bflPath = join(tmp, "flux1-tiny.safetensors");
      const bfl = toBfl(await readAllFloat32(fixture.weightsPath), config.numLayers, config.numSingleLayers);
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
      expect(relativeL2(outputs[1]!, io.get("out.sample")!.data)).toBeLessThan(1e-4);
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
