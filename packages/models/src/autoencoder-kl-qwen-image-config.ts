import { configReader } from "./config-reader.js";
import { ModelConfigError } from "./model-config-error.js";

/** The diffusers `vae/config.json` of an AutoencoderKLQwenImage (the Wan-2.1 causal 3-D VAE), as the builders need it. */
export interface AutoencoderKLQwenImageConfig {
  baseDim: number;
  zDim: number;
  dimMult: number[];
  numResBlocks: number;
  /** Per down stage (all but the last): whether it also halves time. Unused for single frames, kept for shape checks. */
  temperalDownsample: boolean[];
  inputChannels: number;
  /** Per-channel latent normalisation, applied by callers: z = (mean − latentsMean) / latentsStd. */
  latentsMean: number[];
  latentsStd: number[];
}

const DEFAULTS: Record<string, unknown> = {
  base_dim: 96,
  z_dim: 16,
  dim_mult: [1, 2, 4, 4],
  num_res_blocks: 2,
  attn_scales: [],
  temperal_downsample: [false, true, true],
  dropout: 0,
  input_channels: 3,
  latents_mean: [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632,
    -0.1922, -0.9497, 0.2503, -0.2921,
  ],
  latents_std: [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382,
    1.1253, 2.8251, 1.916,
  ],
};

/** Reads a diffusers AutoencoderKLQwenImage config.json object, filling diffusers' defaults; `source` names the file. */
export function parseAutoencoderKLQwenImageConfig(
  json: Record<string, unknown>,
  source = "config.json",
): AutoencoderKLQwenImageConfig {
  const { get, int } = configReader(json, DEFAULTS, source);
  const list = <T>(k: string, ok: (v: unknown) => boolean, length?: number): T[] => {
    const v = get(k);
    if (!Array.isArray(v) || !v.every(ok) || (length !== undefined && v.length !== length)) {
      throw new ModelConfigError(
        `${source}: "${k}" must be a list${length === undefined ? "" : ` of ${length}`} valid entries, got ${JSON.stringify(v)}`,
      );
    }
    return v as T[];
  };
  const zDim = int("z_dim");
  const dimMult = list<number>("dim_mult", (d) => Number.isInteger(d) && (d as number) > 0);
  const attn = list<number>("attn_scales", (d) => typeof d === "number");
  if (attn.length > 0) {
    throw new ModelConfigError(
      `${source}: "attn_scales" is ${JSON.stringify(attn)}; only the mid-block attention of the released VAE ` +
        "(attn_scales []) is implemented.",
    );
  }
  const finite = (v: unknown) => typeof v === "number" && Number.isFinite(v);
  return {
    baseDim: int("base_dim"),
    zDim,
    dimMult,
    numResBlocks: int("num_res_blocks"),
    temperalDownsample: list<boolean>(
      "temperal_downsample",
      (b) => typeof b === "boolean",
      dimMult.length - 1,
    ),
    inputChannels: int("input_channels"),
    latentsMean: list<number>("latents_mean", finite, zDim),
    latentsStd: list<number>("latents_std", (v) => finite(v) && (v as number) > 0, zDim),
  };
}
