import { TINY_TRANSFORMER_CONFIG_JSON } from "./tiny-config.js";

/** A micro version of the tiny transformer (1 + 1 blocks, width 16) for tests about loops and graphs, not the model. */
export const MICRO_TRANSFORMER_CONFIG_JSON = {
  ...TINY_TRANSFORMER_CONFIG_JSON,
  num_layers: 1,
  num_single_layers: 1,
  num_attention_heads: 2,
  attention_head_dim: 8,
  joint_attention_dim: 16,
  pooled_projection_dim: 16,
  axes_dims_rope: [2, 2, 4],
};
