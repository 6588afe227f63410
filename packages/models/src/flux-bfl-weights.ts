import {
  sliceWeightRows,
  stackWeightRows,
  type WeightEntry,
  WeightError,
  type WeightSource,
} from "./weight-source.js";

/** BFL module → diffusers module, outside the blocks (weight and bias). */
const SIMPLE: Readonly<Record<string, string>> = {
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

/** Per double block: BFL module → diffusers module (weight and bias). */
const DOUBLE: Readonly<Record<string, string>> = {
  "img_mod.lin": "norm1.linear",
  "txt_mod.lin": "norm1_context.linear",
  "img_attn.proj": "attn.to_out.0",
  "txt_attn.proj": "attn.to_add_out",
  "img_mlp.0": "ff.net.0.proj",
  "img_mlp.2": "ff.net.2",
  "txt_mlp.0": "ff_context.net.0.proj",
  "txt_mlp.2": "ff_context.net.2",
};

/** Per double block: BFL norm scale → diffusers norm weight. */
const DOUBLE_NORMS: Readonly<Record<string, string>> = {
  "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
  "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
  "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
  "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
};

/** Per single block: BFL module → diffusers module (weight and bias). */
const SINGLE: Readonly<Record<string, string>> = { "modulation.lin": "norm.linear", linear2: "proj_out" };
/** Per single block: BFL norm scale → diffusers norm weight. */
const SINGLE_NORMS: Readonly<Record<string, string>> = {
  "norm.query_norm.scale": "attn.norm_q.weight",
  "norm.key_norm.scale": "attn.norm_k.weight",
};

/** The diffusers projections each fused BFL tensor stacks, in row order. */
const IMG_QKV = ["to_q", "to_k", "to_v"].map((m) => `attn.${m}`);
const TXT_QKV = ["add_q_proj", "add_k_proj", "add_v_proj"].map((m) => `attn.${m}`);
const LINEAR1 = [...IMG_QKV, "proj_mlp"];

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

  const thirds = (inner: number) => [inner, inner, inner];

  for (const key of source.names()) {
    const m = /^(.*)\.(weight|bias|scale)$/.exec(key);
    const [module, suffix] = m ? [m[1]!, m[2]!] : [key, ""];
    const blk = /^(double_blocks|single_blocks)\.(\d+)\.(.*)$/.exec(module);
    if (!blk) {
      if (SIMPLE[module]) rename(key, `${SIMPLE[module]}.${suffix}`);
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
      if (DOUBLE[rest!]) rename(key, `${to}.${DOUBLE[rest!]}.${suffix}`);
      else if (DOUBLE_NORMS[`${rest}.${suffix}`]) rename(key, `${to}.${DOUBLE_NORMS[`${rest}.${suffix}`]}`);
      else if (rest === "img_attn.qkv")
        split(
          `${bfl}.${rest}`,
          IMG_QKV.map((t) => `${to}.${t}`),
          suffix,
          thirds,
        );
      else if (rest === "txt_attn.qkv") {
        split(
          `${bfl}.${rest}`,
          TXT_QKV.map((t) => `${to}.${t}`),
          suffix,
          thirds,
        );
      } else unmapped.push(key);
    } else {
      const to = `single_transformer_blocks.${index}`;
      if (SINGLE[rest!]) rename(key, `${to}.${SINGLE[rest!]}.${suffix}`);
      else if (SINGLE_NORMS[`${rest}.${suffix}`]) rename(key, `${to}.${SINGLE_NORMS[`${rest}.${suffix}`]}`);
      else if (rest === "linear1") {
        // linear1 stacks q, k, v (inner rows each) and the MLP input projection (the remaining rows).
        split(
          `${kind}.${index}.linear1`,
          LINEAR1.map((t) => `${to}.${t}`),
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

/** Float32 tensors by name, as read from (or written to) a safetensors file. */
export type Float32Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Diffusers FLUX transformer weights in the BFL single-file layout, the inverse of `fluxBflWeightSource`
 * (write the result with `writeSafetensors` for tools that only read BFL files): fused qkv / linear1 rows
 * are concatenated, and final_layer.adaLN_modulation.1 stores (shift, scale) where diffusers stores
 * (scale, shift). Block counts are read off the keys; the guidance embedder is written when present.
 * Unfused tensors are shared with the input, not copied.
 */
export function fluxDiffusersToBfl(
  weights: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
): Float32Tensors {
  const out: Float32Tensors = new Map();
  const take = (key: string) => {
    const t = weights.get(key);
    if (!t) {
      throw new WeightError(
        `diffusers FLUX weights lack "${key}", which the BFL layout needs; pass the whole transformer.`,
        key,
      );
    }
    return { shape: [...t.shape], data: t.data };
  };
  // Typed-array copies, not spread arrays: a real transformer's fused tensors hold tens of millions of values.
  const cat = (keys: string[]) => {
    const parts = keys.map(take);
    const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
    let at = 0;
    for (const p of parts) {
      data.set(p.data, at);
      at += p.data.length;
    }
    return { shape: [parts.reduce((n, p) => n + p.shape[0]!, 0), ...parts[0]!.shape.slice(1)], data };
  };
  const both = (to: string, from: string) => {
    for (const s of ["weight", "bias"]) out.set(`${to}.${s}`, take(`${from}.${s}`));
  };
  const blocks = (prefix: string) => {
    const pattern = new RegExp(`^${prefix}\\.(\\d+)\\.`);
    let n = 0;
    for (const key of weights.keys()) {
      const m = pattern.exec(key);
      if (m) n = Math.max(n, Number(m[1]) + 1);
    }
    return n;
  };
  for (const [bfl, diffusers] of Object.entries(SIMPLE)) {
    // Only guidance-distilled checkpoints (dev, Kontext) have a guidance embedder.
    if (bfl.startsWith("guidance_in.") && !weights.has(`${diffusers}.weight`)) continue;
    both(bfl, diffusers);
  }
  for (const s of ["weight", "bias"]) {
    const t = take(`norm_out.linear.${s}`);
    const half = t.data.length / 2;
    const data = new Float32Array(t.data.length);
    data.set(t.data.subarray(half), 0);
    data.set(t.data.subarray(0, half), half);
    out.set(`final_layer.adaLN_modulation.1.${s}`, { shape: t.shape, data });
  }
  for (let i = 0; i < blocks("transformer_blocks"); i++) {
    const b = `double_blocks.${i}`;
    const f = `transformer_blocks.${i}`;
    for (const [bfl, diffusers] of Object.entries(DOUBLE)) both(`${b}.${bfl}`, `${f}.${diffusers}`);
    for (const [bfl, diffusers] of Object.entries(DOUBLE_NORMS))
      out.set(`${b}.${bfl}`, take(`${f}.${diffusers}`));
    for (const s of ["weight", "bias"]) {
      out.set(`${b}.img_attn.qkv.${s}`, cat(IMG_QKV.map((m) => `${f}.${m}.${s}`)));
      out.set(`${b}.txt_attn.qkv.${s}`, cat(TXT_QKV.map((m) => `${f}.${m}.${s}`)));
    }
  }
  for (let i = 0; i < blocks("single_transformer_blocks"); i++) {
    const b = `single_blocks.${i}`;
    const f = `single_transformer_blocks.${i}`;
    for (const [bfl, diffusers] of Object.entries(SINGLE)) both(`${b}.${bfl}`, `${f}.${diffusers}`);
    for (const [bfl, diffusers] of Object.entries(SINGLE_NORMS))
      out.set(`${b}.${bfl}`, take(`${f}.${diffusers}`));
    for (const s of ["weight", "bias"])
      out.set(`${b}.linear1.${s}`, cat(LINEAR1.map((m) => `${f}.${m}.${s}`)));
  }
  return out;
}
