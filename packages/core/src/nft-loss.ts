import { ConfigError, ShapeError } from "./errors.js";

/** How advantages are shaped before the r mapping (DiffusionNFT's `adv_mode`); Edit-R1 uses "all". */
export type AdvantageMode = "all" | "positive_only" | "negative_only" | "one_only" | "binary";

export interface NftSettings {
  /** NFT mixing strength β of the implicit policies (config.beta); 1 in Edit-R1. */
  beta: number;
  /** Weight of the velocity MSE to the reference model (config.train.beta); 1e-4 in Edit-R1. */
  klWeight: number;
  /** Advantage clip and the policy-loss scale; 5 in Edit-R1. */
  advClipMax: number;
  advMode: AdvantageMode;
}

export const DEFAULT_NFT_SETTINGS: NftSettings = { beta: 1, klWeight: 1e-4, advClipMax: 5, advMode: "all" };

/** Floor of the adaptive weights, as in the reference. */
const WEIGHT_FLOOR = 1e-5;

/** Maps one advantage to the optimality probability r ∈ [0, 1]: clip, shape by mode, r = clip(A/max/2 + ½, 0, 1). */
export function advantageToR(advantage: number, advClipMax = 5, mode: AdvantageMode = "all"): number {
  let a = Math.min(Math.max(advantage, -advClipMax), advClipMax);
  switch (mode) {
    case "all":
      break;
    case "positive_only":
      a = Math.max(a, 0);
      break;
    case "negative_only":
      a = Math.min(a, 0);
      break;
    case "one_only":
      a = a > 0 ? 1 : 0;
      break;
    case "binary":
      a = Math.sign(a);
      break;
    default:
      throw new ConfigError(`unknown advantage mode ${JSON.stringify(mode)}`);
  }
  return Math.min(Math.max(a / advClipMax / 2 + 0.5, 0), 1);
}

export interface NftLossInput extends Partial<NftSettings> {
  /** Clean latents, batch-first, B × D values. */
  x0: ArrayLike<number>;
  /** The training noise ε (fresh per timestep), B × D. */
  noise: ArrayLike<number>;
  /** Per-sample time t ∈ [0, 1] (x_t = (1 − t)·x0 + t·ε), B values. */
  t: ArrayLike<number>;
  /** Velocities of the trained, old and reference parameters at x_t, B × D each. */
  vTheta: ArrayLike<number>;
  vOld: ArrayLike<number>;
  vRef: ArrayLike<number>;
  /** Group-normalised advantages, B values. */
  advantages: ArrayLike<number>;
  /** 1 keeps a sample, 0 masks it out of both means; all ones when omitted. */
  validMask?: ArrayLike<number>;
  /**
   * Also differentiate through the adaptive weights mean|x0± − x0|. The reference computes them under
   * torch.no_grad() (false, the default); the `nft_loss` fixtures' grad_v_theta was produced with true.
   */
  differentiateWeights?: boolean;
}

export interface NftLossOutput {
  loss: number;
  policyLoss: number;
  klLoss: number;
  r: Float64Array;
  /** Per-sample adaptive-weighted losses L⁺, L⁻ and velocity MSE to the reference. */
  positiveLoss: Float64Array;
  negativeLoss: Float64Array;
  klPerSample: Float64Array;
  /** d loss / d v_θ with the adaptive weights held constant (stop-gradient), B × D. */
  gradVTheta: Float64Array;
}

/**
 * The DiffusionNFT loss of one micro-batch at one timestep, in float64, exactly as Edit-R1's training
 * step computes it: implicit policies v± from β, x0-space errors with detached adaptive weights,
 * policy loss = advClipMax · masked-mean(r·L⁺ + (1 − r)·L⁻)/β, plus klWeight · masked-mean(MSE(v_θ, v_ref)).
 * An all-zero mask gives zero loss and zero gradient (the reference still runs backward, with 0·Σ).
 */
export function nftLoss(input: NftLossInput): NftLossOutput {
  const beta = input.beta ?? DEFAULT_NFT_SETTINGS.beta;
  const klWeight = input.klWeight ?? DEFAULT_NFT_SETTINGS.klWeight;
  const advClipMax = input.advClipMax ?? DEFAULT_NFT_SETTINGS.advClipMax;
  const advMode = input.advMode ?? DEFAULT_NFT_SETTINGS.advMode;
  if (!(beta > 0)) throw new ConfigError(`nftLoss: beta must be positive, got ${beta}`);
  if (!(advClipMax > 0)) throw new ConfigError(`nftLoss: advClipMax must be positive, got ${advClipMax}`);
  const batch = input.t.length;
  if (batch === 0) throw new ShapeError("nftLoss: empty batch (t has no values)");
  const total = input.x0.length;
  if (total % batch !== 0)
    throw new ShapeError(`nftLoss: x0 has ${total} values, not a multiple of the batch size ${batch}`);
  for (const [name, arr] of [
    ["noise", input.noise],
    ["vTheta", input.vTheta],
    ["vOld", input.vOld],
    ["vRef", input.vRef],
  ] as const) {
    if (arr.length !== total)
      throw new ShapeError(`nftLoss: ${name} has ${arr.length} values, x0 has ${total}`);
  }
  if (input.advantages.length !== batch)
    throw new ShapeError(`nftLoss: advantages has ${input.advantages.length} values for a batch of ${batch}`);
  if (input.validMask && input.validMask.length !== batch)
    throw new ShapeError(`nftLoss: validMask has ${input.validMask.length} values for a batch of ${batch}`);

  const dim = total / batch;
  const r = new Float64Array(batch);
  const positiveLoss = new Float64Array(batch);
  const negativeLoss = new Float64Array(batch);
  const klPerSample = new Float64Array(batch);
  const gradVTheta = new Float64Array(total);
  const ePos = new Float64Array(dim);
  const eNeg = new Float64Array(dim);
  let maskSum = 0;
  for (let b = 0; b < batch; b++) maskSum += input.validMask ? Number(input.validMask[b]) : 1;

  let policySum = 0;
  let klSum = 0;
  for (let b = 0; b < batch; b++) {
    const mask = input.validMask ? Number(input.validMask[b]) : 1;
    const t = input.t[b]!;
    r[b] = advantageToR(input.advantages[b]!, advClipMax, advMode);
    let absPos = 0;
    let absNeg = 0;
    let sqPos = 0;
    let sqNeg = 0;
    let sqKl = 0;
    const off = b * dim;
    for (let d = 0; d < dim; d++) {
      const x0 = input.x0[off + d]!;
      const xt = (1 - t) * x0 + t * input.noise[off + d]!;
      const v = input.vTheta[off + d]!;
      const vOld = input.vOld[off + d]!;
      const vPos = beta * v + (1 - beta) * vOld;
      const vNeg = (1 + beta) * vOld - beta * v;
      const ep = xt - t * vPos - x0;
      const en = xt - t * vNeg - x0;
      ePos[d] = ep;
      eNeg[d] = en;
      absPos += Math.abs(ep);
      absNeg += Math.abs(en);
      sqPos += ep * ep;
      sqNeg += en * en;
      const dk = v - input.vRef[off + d]!;
      sqKl += dk * dk;
    }
    const wPos = Math.max(absPos / dim, WEIGHT_FLOOR);
    const wNeg = Math.max(absNeg / dim, WEIGHT_FLOOR);
    positiveLoss[b] = sqPos / dim / wPos;
    negativeLoss[b] = sqNeg / dim / wNeg;
    klPerSample[b] = sqKl / dim;
    const rb = r[b]!;
    policySum += mask * (rb * positiveLoss[b]! + (1 - rb) * negativeLoss[b]!);
    klSum += mask * klPerSample[b]!;

    if (maskSum > 0 && mask !== 0) {
      // d e⁺/d v = −tβ and d e⁻/d v = +tβ; each L is a mean of squares over D, divided by its weight.
      const policyScale = (mask * advClipMax) / beta / maskSum;
      const cPos = (policyScale * rb * 2 * -t * beta) / (dim * wPos);
      const cNeg = (policyScale * (1 - rb) * 2 * t * beta) / (dim * wNeg);
      const cKl = (mask * klWeight * 2) / (dim * maskSum);
      // d(mean|e|)/de = sign(e)/D, and zero where the floor is active; scaled like the 2e/(D·w) term.
      const sPos = input.differentiateWeights && absPos / dim > WEIGHT_FLOOR ? positiveLoss[b]! / 2 : 0;
      const sNeg = input.differentiateWeights && absNeg / dim > WEIGHT_FLOOR ? negativeLoss[b]! / 2 : 0;
      for (let d = 0; d < dim; d++) {
        const dk = input.vTheta[off + d]! - input.vRef[off + d]!;
        const gp = ePos[d]! - sPos * Math.sign(ePos[d]!);
        const gn = eNeg[d]! - sNeg * Math.sign(eNeg[d]!);
        gradVTheta[off + d] = cPos * gp + cNeg * gn + cKl * dk;
      }
    }
  }
  const policyLoss = maskSum > 0 ? (policySum * advClipMax) / beta / maskSum : 0;
  const klLoss = maskSum > 0 ? klSum / maskSum : 0;
  return {
    loss: policyLoss + klWeight * klLoss,
    policyLoss,
    klLoss,
    r,
    positiveLoss,
    negativeLoss,
    klPerSample,
    gradVTheta,
  };
}
