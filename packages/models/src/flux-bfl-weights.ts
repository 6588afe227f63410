import {
  sliceWeightRows,
  stackWeightRows,
  type WeightEntry,
  WeightError,
  type WeightSource,
} from "./weight-source.js";

/**
 * The FLUX transformer of a BFL single-file checkpoint (`flux1-kontext-dev.safetensors`: `double_blocks.*`,
 * `single_blocks.*`, fused qkv, …) seen under diffusers keys, so `buildFluxTransformer` loads it unchanged.
 *
 * Nothing is copied: fused tensors are split into row ranges of the stored tensor, and `final_layer`'s
 * modulation — stored (shift, scale) where diffusers stores (scale, shift) — becomes its two halves stacked in
 * the other order. Keys with no diffusers counterpart are listed in `unmapped`.
 */
export function fluxBflWeightSource(source: WeightSource): WeightSource & { unmapped: readonly string[] } {
  const map = new Map<string, () => WeightEntry>();
  const unmapped: string[] = [];
  const need = (key: string): WeightEntry => {
    const e = source.get(key);
    if (!e) throw new WeightError(`${source.description}: BFL weight "${key}" is missing.`, key);
    return e;
  };
  /** Row ranges [start, count] of a fused BFL tensor, the widths taken from the weight's input size. */
  const split = (
    bflKey: string,
    targets: readonly string[],
    suffix: string,
    widths: (inner: number, rows: number) => number[],
  ) => {
    targets.forEach((target, part) => {
      map.set(`${target}.${suffix}`, () => {
        const e = need(`${bflKey}.${suffix}`);
        const weight = need(`${bflKey}.weight`);
        const sizes = widths(weight.shape[1]!, weight.shape[0]!);
        const start = sizes.slice(0, part).reduce((a, b) => a + b, 0);
        if (sizes.reduce((a, b) => a + b, 0) !== e.shape[0] || sizes.some((s) => s <= 0)) {
          throw new WeightError(
            `${source.description}: BFL weight "${bflKey}.${suffix}" has shape [${e.shape.join(", ")}], ` +
              `which does not split into ${targets.length} parts of sizes ${sizes.join(", ")}.`,
            `${bflKey}.${suffix}`,
          );
        }
        return sliceWeightRows(e, start, sizes[part]!, `${bflKey}.${suffix}`);
      });
    });
  };
  const rename = (bflKey: string, target: string) => map.set(target, () => need(bflKey));

  const simple: Record<string, string> = {
    img_in: "x_embedder",
    txt_in: "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
  };
  const double: Record<string, string> = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
  };
  const doubleNorms: Record<string, string> = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
  };
  const single: Record<string, string> = { "modulation.lin": "norm.linear", linear2: "proj_out" };
  const singleNorms: Record<string, string> = {
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
  };
  const thirds = (inner: number) => [inner, inner, inner];

  for (const key of source.names()) {
    const m = /^(.*)\.(weight|bias|scale)$/.exec(key);
    const [module, suffix] = m ? [m[1]!, m[2]!] : [key, ""];
    const blk = /^(double_blocks|single_blocks)\.(\d+)\.(.*)$/.exec(module);
    if (!blk) {
      if (simple[module]) rename(key, `${simple[module]}.${suffix}`);
      else if (module === "final_layer.adaLN_modulation.1") {
        map.set(`norm_out.linear.${suffix}`, () => {
          const e = need(key);
          const half = e.shape[0]! / 2;
          return stackWeightRows(
            [sliceWeightRows(e, half, half, key), sliceWeightRows(e, 0, half, key)],
            key,
          );
        });
      } else unmapped.push(key);
      continue;
    }
    const [, kind, index, rest] = blk;
    if (kind === "double_blocks") {
      const to = `transformer_blocks.${index}`;
      const bfl = `${kind}.${index}`;
      if (double[rest!]) rename(key, `${to}.${double[rest!]}.${suffix}`);
      else if (doubleNorms[`${rest}.${suffix}`]) rename(key, `${to}.${doubleNorms[`${rest}.${suffix}`]}`);
      else if (rest === "img_attn.qkv")
        split(
          `${bfl}.${rest}`,
          ["to_q", "to_k", "to_v"].map((t) => `${to}.attn.${t}`),
          suffix,
          thirds,
        );
      else if (rest === "txt_attn.qkv") {
        split(
          `${bfl}.${rest}`,
          ["add_q_proj", "add_k_proj", "add_v_proj"].map((t) => `${to}.attn.${t}`),
          suffix,
          thirds,
        );
      } else unmapped.push(key);
    } else {
      const to = `single_transformer_blocks.${index}`;
      if (single[rest!]) rename(key, `${to}.${single[rest!]}.${suffix}`);
      else if (singleNorms[`${rest}.${suffix}`]) rename(key, `${to}.${singleNorms[`${rest}.${suffix}`]}`);
      else if (rest === "linear1") {
        // linear1 stacks q, k, v (inner rows each) and the MLP input projection (the remaining rows).
        split(
          `${kind}.${index}.linear1`,
          [`${to}.attn.to_q`, `${to}.attn.to_k`, `${to}.attn.to_v`, `${to}.proj_mlp`],
          suffix,
          (inner, rows) => [inner, inner, inner, rows - 3 * inner],
        );
      } else unmapped.push(key);
    }
  }
  const cache = new Map<string, WeightEntry>();
  return {
    description: `${source.description} (BFL layout mapped to diffusers keys)`,
    unmapped,
    get(name) {
      const cached = cache.get(name);
      if (cached) return cached;
      const make = map.get(name);
      if (!make) return undefined;
      const e = make();
      cache.set(name, e);
      return e;
    },
    names: () => [...map.keys()],
  };
}
