import { ModelConfigError } from "./model-config-error.js";

/** The diffusers `config.json` of a FluxTransformer2DModel (FLUX.1 and FLUX.1-Kontext share it). */
export interface FluxTransformerConfig {
  patchSize: number;
  inChannels: number;
  outChannels: number;
  numLayers: number;
  numSingleLayers: number;
  attentionHeadDim: number;
  numAttentionHeads: number;
  jointAttentionDim: number;
  pooledProjectionDim: number;
  guidanceEmbeds: boolean;
  axesDimsRope: [number, number, number];
}

const DEFAULTS: Record<string, unknown> = {
  patch_size: 1,
  in_channels: 64,
  out_channels: null,
  num_layers: 19,
  num_single_layers: 38,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 4096,
  pooled_projection_dim: 768,
  guidance_embeds: false,
  axes_dims_rope: [16, 56, 56],
};

/** Reads a diffusers config.json object, filling diffusers' defaults; `source` names the file in errors. */
export function parseFluxTransformerConfig(
  json: Record<string, unknown>,
  source = "config.json",
): FluxTransformerConfig {
  const get = (k: string) => (k in json ? json[k] : DEFAULTS[k]);
  const int = (k: string): number => {
    const v = get(k);
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ModelConfigError(`${source}: "${k}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const axes = get("axes_dims_rope");
  if (
    !Array.isArray(axes) ||
    axes.length !== 3 ||
    !axes.every((a) => Number.isInteger(a) && a > 0 && a % 2 === 0)
  ) {
    throw new ModelConfigError(
      `${source}: "axes_dims_rope" must be three positive even integers, got ${JSON.stringify(axes)}`,
    );
  }
  const headDim = int("attention_head_dim");
  const axesSum = axes.reduce((a: number, b: number) => a + b, 0);
  if (axesSum !== headDim) {
    throw new ModelConfigError(
      `${source}: "axes_dims_rope" must sum to attention_head_dim (${headDim}), got ${axesSum}`,
    );
  }
  const inChannels = int("in_channels");
  const out = get("out_channels") == null ? inChannels : int("out_channels");
  return {
    patchSize: int("patch_size"),
    inChannels,
    outChannels: out,
    numLayers: int("num_layers"),
    numSingleLayers: int("num_single_layers"),
    attentionHeadDim: headDim,
    numAttentionHeads: int("num_attention_heads"),
    jointAttentionDim: int("joint_attention_dim"),
    pooledProjectionDim: int("pooled_projection_dim"),
    guidanceEmbeds: Boolean(get("guidance_embeds")),
    axesDimsRope: axes as [number, number, number],
  };
}
