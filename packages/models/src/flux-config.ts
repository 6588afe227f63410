import { configReader, ropeAxes } from "./config-reader.js";

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
  const { get, int } = configReader(json, DEFAULTS, source);
  const headDim = int("attention_head_dim");
  const axes = ropeAxes(get("axes_dims_rope"), headDim, source);
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
    axesDimsRope: axes,
  };
}
