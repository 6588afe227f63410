import { type Graph, ops, type Tensor } from "@edit-r1/engine";
import { ConfigError, ShapeError } from "./errors.js";
import { DEFAULT_NFT_SETTINGS, type NftSettings } from "./nft-loss.js";

/** Floor of the adaptive weights, as in the reference (and `nftLoss`). */
const WEIGHT_FLOOR = 1e-5;

/** The graph tensors the DiffusionNFT objective reads; all belong to one graph. */
export interface NftObjectiveInputs {
  /** Clean latents [B, ...]. */
  x0: Tensor;
  /** The noised latents [B, ...] when the caller already built them (they fed the velocity subgraphs). */
  xt?: Tensor;
  /** The training noise [B, ...]; needed when `xt` is not given (x_t = (1 − t)·x0 + t·noise). */
  noise?: Tensor;
  /** Per-sample time [B]. */
  t: Tensor;
  /** Velocities [B, ...] of the trained, old and reference parameters at x_t. */
  vTheta: Tensor;
  vOld: Tensor;
  vRef: Tensor;
  /** Optimality probabilities r ∈ [0, 1], [B]: `advantageToR` of the advantages, computed on the TS side. */
  r: Tensor;
  /** 1 keeps a sample, 0 masks it out of both means, [B]. */
  mask: Tensor;
}

export interface NftObjectiveSettings extends Partial<Pick<NftSettings, "beta" | "klWeight" | "advClipMax">> {
  /**
   * Also differentiate through the adaptive weights (false, the default, holds them constant as the
   * reference's torch.no_grad() does; see `nftLoss`).
   */
  differentiateWeights?: boolean;
}

/** Scalar ([]) tensors of the objective, plus the x_t it used. */
export interface NftObjective {
  loss: Tensor;
  policyLoss: Tensor;
  klLoss: Tensor;
  xt: Tensor;
}

const fmt = (t: Tensor) => `${t.dtype}[${t.shape.join(",")}]`;

/**
 * Builds the DiffusionNFT loss of one micro-batch at one timestep into `g`, the graph twin of `nftLoss`:
 * implicit policies v± from β, x0-space errors x_t − t·v± − x0 with adaptive weights
 * max(mean|e±|, 1e-5) behind stopGradient, policy loss = advClipMax · masked-mean(r·L⁺ + (1 − r)·L⁻)/β,
 * plus klWeight · masked-mean(MSE(v_θ, v_ref)). An all-zero mask gives 0 (and zero gradients) rather than
 * 0/0. v_old and v_ref pass through stopGradient, so `grad(loss, θ)` only follows v_θ.
 */
export function buildNftObjective(
  g: Graph,
  inputs: NftObjectiveInputs,
  settings: NftObjectiveSettings = {},
): NftObjective {
  const beta = settings.beta ?? DEFAULT_NFT_SETTINGS.beta;
  const klWeight = settings.klWeight ?? DEFAULT_NFT_SETTINGS.klWeight;
  const advClipMax = settings.advClipMax ?? DEFAULT_NFT_SETTINGS.advClipMax;
  if (!(beta > 0)) throw new ConfigError(`buildNftObjective: beta must be positive, got ${beta}`);
  if (!(advClipMax > 0))
    throw new ConfigError(`buildNftObjective: advClipMax must be positive, got ${advClipMax}`);
  if (!Number.isFinite(klWeight))
    throw new ConfigError(`buildNftObjective: klWeight must be a finite number, got ${klWeight}`);

  const { x0, t, r, mask } = inputs;
  const named: [string, Tensor | undefined][] = [
    ["x0", x0],
    ["xt", inputs.xt],
    ["noise", inputs.noise],
    ["t", t],
    ["vTheta", inputs.vTheta],
    ["vOld", inputs.vOld],
    ["vRef", inputs.vRef],
    ["r", r],
    ["mask", mask],
  ];
  for (const [name, tensor] of named) {
    if (tensor && tensor.graph !== g)
      throw new ShapeError(`buildNftObjective: ${name} ${tensor} belongs to another graph`);
    if (tensor && tensor.dtype !== x0.dtype)
      throw new ShapeError(
        `buildNftObjective: ${name} is ${fmt(tensor)} but x0 is ${fmt(x0)}; cast it to ${x0.dtype}`,
      );
  }
  if (x0.rank < 2) throw new ShapeError(`buildNftObjective: x0 must be [batch, ...latent], got ${fmt(x0)}`);
  const batch = x0.shape[0]!;
  const sameAsX0 = (tensor: Tensor) =>
    tensor.rank === x0.rank && tensor.shape.every((d, i) => d === x0.shape[i]);
  for (const [name, tensor] of named.slice(1)) {
    if (!tensor) continue;
    const perSample = name === "t" || name === "r" || name === "mask";
    const ok = perSample ? tensor.rank === 1 && tensor.shape[0] === batch : sameAsX0(tensor);
    if (!ok)
      throw new ShapeError(
        `buildNftObjective: ${name} is ${fmt(tensor)}, expected ${perSample ? `[${batch}]` : `x0's shape [${x0.shape.join(",")}]`}`,
      );
  }
  if (!inputs.xt && !inputs.noise)
    throw new ShapeError("buildNftObjective: give either xt or noise (x_t = (1 − t)·x0 + t·noise)");

  return g.scope("nft_objective", () => {
    const latentAxes = x0.shape.slice(1).map((_, i) => i + 1);
    // Per-sample scalars as [B, 1, …, 1] so they broadcast over the latent dims.
    const column = (v: Tensor) => ops.reshape(v, [batch, ...latentAxes.map(() => 1)]);
    const tc = column(t);
    const xt = inputs.xt ?? ops.add(ops.mul(ops.sub(1, tc), x0), ops.mul(tc, inputs.noise!));
    const vTheta = inputs.vTheta;
    // The old and reference passes are targets, never trained through.
    const vOld = ops.stopGradient(inputs.vOld);
    const vRef = ops.stopGradient(inputs.vRef);

    const vPos = ops.add(ops.mul(vTheta, beta), ops.mul(vOld, 1 - beta));
    const vNeg = ops.sub(ops.mul(vOld, 1 + beta), ops.mul(vTheta, beta));
    const x0Error = (v: Tensor) => ops.sub(ops.sub(xt, ops.mul(tc, v)), x0);
    const weighted = (e: Tensor) => {
      // The reference computes the weight under no_grad: stop before |e| so autodiff never sees it.
      const held = settings.differentiateWeights ? e : ops.stopGradient(e);
      const w = ops.maximum(ops.reduceMean(ops.abs(held), latentAxes), WEIGHT_FLOOR);
      return ops.div(ops.reduceMean(ops.mul(e, e), latentAxes), w);
    };
    const lPos = weighted(x0Error(vPos));
    const lNeg = weighted(x0Error(vNeg));
    const perSample = ops.div(ops.add(ops.mul(r, lPos), ops.mul(ops.sub(1, r), lNeg)), beta);

    const maskSum = ops.reduceSum(mask);
    // An all-masked batch divides 0 by 1 instead of 0 by 0, so the loss and its gradient are 0, not NaN.
    const denominator = ops.where(ops.greater(maskSum, 0), maskSum, 1);
    const maskedMean = (v: Tensor) => ops.div(ops.reduceSum(ops.mul(mask, v)), denominator);
    const policyLoss = ops.mul(maskedMean(perSample), advClipMax);
    const dv = ops.sub(vTheta, vRef);
    const klLoss = maskedMean(ops.reduceMean(ops.mul(dv, dv), latentAxes));
    const loss = ops.add(policyLoss, ops.mul(klLoss, klWeight));
    return { loss, policyLoss, klLoss, xt };
  });
}
