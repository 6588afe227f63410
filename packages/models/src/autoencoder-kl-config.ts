import { configReader } from "./config-reader.js";
import { ModelConfigError } from "./model-config-error.js";

/** The diffusers `config.json` of an AutoencoderKL (the FLUX VAE family), as the graph builder needs it. */
export interface AutoencoderKLConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
  /** Latent normalisation: z = (mean − shiftFactor) · scalingFactor (applied by callers, not by the graphs). */
  scalingFactor: number;
  shiftFactor: number;
}

const DEFAULTS: Record<string, unknown> = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** Reads a diffusers AutoencoderKL config.json object, filling diffusers' defaults; `source` names the file in errors. */
export function parseAutoencoderKLConfig(
  json: Record<string, unknown>,
  source = "config.json",
): AutoencoderKLConfig {
  const { get, int } = configReader(json, DEFAULTS, source);
  const bad = (k: string, what: string) =>
    new ModelConfigError(`${source}: "${k}" ${what}, got ${JSON.stringify(get(k))}`);
  const num = (k: string, fallback: number): number => {
    const v = get(k);
    if (v == null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) throw bad(k, "must be a number or null");
    return v;
  };
  const blocks = get("block_out_channels");
  if (!Array.isArray(blocks) || blocks.length === 0 || !blocks.every((b) => Number.isInteger(b) && b > 0)) {
    throw bad("block_out_channels", "must be a non-empty list of positive integers");
  }
  const groups = int("norm_num_groups");
  if (!blocks.every((b: number) => b % groups === 0)) {
    throw bad("block_out_channels", `must all be divisible by norm_num_groups (${groups})`);
  }
  for (const [k, want] of [
    ["down_block_types", "DownEncoderBlock2D"],
    ["up_block_types", "UpDecoderBlock2D"],
  ] as const) {
    const types = get(k);
    if (!Array.isArray(types) || types.length !== blocks.length || types.some((t) => t !== want)) {
      throw bad(k, `must list "${want}" once per block_out_channels entry (${blocks.length})`);
    }
  }
  if (get("act_fn") !== "silu")
    throw bad("act_fn", 'must be "silu" (the only activation the builder implements)');
  return {
    inChannels: int("in_channels"),
    outChannels: int("out_channels"),
    blockOutChannels: [...blocks],
    layersPerBlock: int("layers_per_block"),
    latentChannels: int("latent_channels"),
    normNumGroups: groups,
    useQuantConv: get("use_quant_conv") !== false,
    usePostQuantConv: get("use_post_quant_conv") !== false,
    midBlockAddAttention: get("mid_block_add_attention") !== false,
    scalingFactor: num("scaling_factor", 0.18215),
    shiftFactor: num("shift_factor", 0),
  };
}
