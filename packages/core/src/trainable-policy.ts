import type { AdamWSettings } from "./adamw.js";
import type { DeviceTrainingState } from "./device-training.js";
import type { NftSettings } from "./nft-loss.js";
import type { ParamSet } from "./params.js";
import type { EditRequest, RgbImage, VelocityFn } from "./types.js";

/** One micro-batch at one training timestep: what a policy needs to compute the NFT loss and its gradients. */
export interface NftBatch {
  requests: readonly EditRequest[];
  /** Clean latents from the rollout, B × D. */
  x0: Float32Array;
  /** Fresh training noise, B × D; x_t = (1 − t)·x0 + t·noise. */
  noise: Float32Array;
  /** Per-sample t, one of the sampler's own sigmas. */
  t: Float64Array;
  advantages: Float64Array;
  validMask: Uint8Array;
  settings: NftSettings;
}

export interface NftStepResult {
  loss: number;
  policyLoss: number;
  klLoss: number;
  /** d loss / d θ for every trainable parameter, same names and sizes as the parameters. */
  gradients: ParamSet;
}

/**
 * What the trainer needs from a model: trainable parameters θ (LoRA for real models), rollouts through
 * any Sampler, decoding, and one fused loss-and-gradient step in which v_θ uses `params`, v_old uses
 * `oldParams` and v_ref uses the frozen base (no trainable delta). The policy owns conditioning and
 * caches it; the trainer only hands over requests.
 */
export interface TrainablePolicy {
  readonly name: string;
  /** A fresh copy of the initial trainable parameters. */
  initialParameters(): ParamSet;
  /**
   * The resolution bucket of a request: requests of one bucket share latent shape and schedule, and the
   * trainer draws every rollout batch and training micro-batch from one bucket. Absent: one bucket.
   */
  bucketKey?(request: EditRequest): string;
  /**
   * Encodes and caches the conditioning of these requests (text/VLM encoder, VAE) before their rollouts, so
   * that `velocity` and `lossAndGradients` find it ready. The trainer awaits it before each rollout batch.
   */
  prepare?(requests: readonly EditRequest[]): Promise<void>;
  /** Latent values per sample (D) for this request. */
  latentSize(request: EditRequest): number;
  /** The rollout sigma schedule for a batch, from 1 down to a terminal 0. */
  sigmas(requests: readonly EditRequest[]): number[];
  /** The velocity of the batch's flow under `params`, for a Sampler (after `prepare` of the same requests). */
  velocity(requests: readonly EditRequest[], params: ParamSet): VelocityFn;
  decode(x0: Float32Array, requests: readonly EditRequest[]): Promise<RgbImage[]>;
  lossAndGradients(batch: NftBatch, params: ParamSet, oldParams: ParamSet): Promise<NftStepResult>;
  /**
   * Training state kept on the device between steps, where the backend allows it (WebGPU): when this returns
   * one, the trainer runs its micro-batches and updates through it instead of `lossAndGradients` and its own
   * AdamW. Undefined (or absent): the state lives in the trainer.
   */
  deviceTraining?(optimizer: AdamWSettings, maxGradNorm: number): DeviceTrainingState | undefined;
  /**
   * Writes `params` as a LoRA others can load (PEFT/diffusers `adapter_model.safetensors` +
   * `adapter_config.json`) into the existing empty folder `dir`. The trainer calls it with the EMA weights.
   */
  exportLora?(params: ParamSet, dir: string): Promise<void>;
}
