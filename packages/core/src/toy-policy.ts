import { ShapeError } from "./errors.js";
import { editR1BaseSigmas } from "./flow-schedule.js";
import { nftLoss } from "./nft-loss.js";
import { assertSameLayout, cloneParams, type ParamSet } from "./params.js";
import { Rng } from "./rng.js";
import type { NftBatch, NftStepResult, TrainablePolicy } from "./trainable-policy.js";
import type { EditRequest, Reward, RewardInput, RewardOutput, RgbImage, VelocityFn } from "./types.js";

const INPUTS = 5; // x, y, sigma, two condition features
const OUTPUTS = 2;
/** Pixel units per latent unit in the toy's decoded images: the range [−4, 4) fits a byte. */
const PIXEL_SCALE = 32;

/** A deterministic 2-D condition per instruction, so different prompts can learn different flows. */
function conditionOf(instruction: string): [number, number] {
  const rng = Rng.derive(0, instruction);
  return [rng.next() * 2 - 1, rng.next() * 2 - 1];
}

interface ForwardCache {
  input: Float64Array;
  h1: Float64Array;
  h2: Float64Array;
}

export interface ToyFlowPolicyOptions {
  hidden?: number;
  seed?: number;
  /** Rollout sigmas (terminal 0 included); Edit-R1's unshifted linspace(1, 1/6, 6) by default. */
  sigmas?: number[];
}

/**
 * A toy policy for tests and demos: a velocity MLP (5 → H → H → 2, tanh) over 2-D points, conditioned
 * on σ and the instruction. All of it is trainable and its initial weights are the frozen reference.
 * Gradients are exact: the float64 NFT reference gives d loss/d v_θ, then manual backprop through the MLP.
 * Points decode to 4×4 images whose red and green channels encode x and y.
 */
export class ToyFlowPolicy implements TrainablePolicy {
  readonly name = "toy-flow-mlp";
  readonly hidden: number;
  private readonly reference: ParamSet;
  private readonly schedule: number[];

  constructor(options: ToyFlowPolicyOptions = {}) {
    this.hidden = options.hidden ?? 32;
    const H = this.hidden;
    const rng = new Rng(options.seed ?? 0);
    const gaussian = (n: number, std: number) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
      return a;
    };
    this.reference = {
      "mlp.0.weight": gaussian(H * INPUTS, 1 / Math.sqrt(INPUTS)),
      "mlp.0.bias": gaussian(H, 0.1),
      "mlp.2.weight": gaussian(H * H, 1 / Math.sqrt(H)),
      "mlp.2.bias": gaussian(H, 0.1),
      // A small output layer: the untrained flow barely moves the noise, so x0 starts near N(0, I).
      "mlp.4.weight": gaussian(OUTPUTS * H, 0.1 / Math.sqrt(H)),
      "mlp.4.bias": new Float32Array(OUTPUTS),
    };
    this.schedule = options.sigmas ?? [...editR1BaseSigmas(6), 0];
  }

  initialParameters(): ParamSet {
    return cloneParams(this.reference);
  }

  latentSize(_request: EditRequest): number {
    return OUTPUTS;
  }

  sigmas(_requests: readonly EditRequest[]): number[] {
    return [...this.schedule];
  }

  velocity(requests: readonly EditRequest[], params: ParamSet): VelocityFn {
    const conds = requests.map((r) => conditionOf(r.instruction));
    return (x, sigma) => {
      if (x.length !== conds.length * OUTPUTS)
        throw new ShapeError(`toy velocity: ${x.length} values for ${conds.length} points`);
      const sig = new Float64Array(conds.length).fill(sigma);
      return Float32Array.from(this.forward(params, x, sig, conds).out);
    };
  }

  async decode(x0: Float32Array, requests: readonly EditRequest[]): Promise<RgbImage[]> {
    return requests.map((_, i) => {
      const r = Math.min(255, Math.max(0, Math.round(128 + PIXEL_SCALE * x0[i * 2]!)));
      const g = Math.min(255, Math.max(0, Math.round(128 + PIXEL_SCALE * x0[i * 2 + 1]!)));
      const data = new Uint8Array(4 * 4 * 3);
      for (let p = 0; p < 16; p++) data.set([r, g, 128], p * 3);
      return { width: 4, height: 4, data };
    });
  }

  async lossAndGradients(batch: NftBatch, params: ParamSet, oldParams: ParamSet): Promise<NftStepResult> {
    assertSameLayout(this.reference, params, "toy policy parameters");
    const B = batch.requests.length;
    if (batch.x0.length !== B * OUTPUTS || batch.noise.length !== B * OUTPUTS)
      throw new ShapeError(`toy policy: x0/noise must hold ${B * OUTPUTS} values for ${B} samples`);
    const conds = batch.requests.map((r) => conditionOf(r.instruction));
    const xt = new Float64Array(B * OUTPUTS);
    for (let b = 0; b < B; b++) {
      const t = batch.t[b]!;
      for (let d = 0; d < OUTPUTS; d++) {
        const i = b * OUTPUTS + d;
        xt[i] = (1 - t) * batch.x0[i]! + t * batch.noise[i]!;
      }
    }
    const theta = this.forward(params, xt, batch.t, conds);
    const old = this.forward(oldParams, xt, batch.t, conds);
    const ref = this.forward(this.reference, xt, batch.t, conds);
    const loss = nftLoss({
      ...batch.settings,
      x0: batch.x0,
      noise: batch.noise,
      t: batch.t,
      vTheta: theta.out,
      vOld: old.out,
      vRef: ref.out,
      advantages: batch.advantages,
      validMask: batch.validMask,
    });
    return {
      loss: loss.loss,
      policyLoss: loss.policyLoss,
      klLoss: loss.klLoss,
      gradients: this.backward(params, theta.cache, loss.gradVTheta),
    };
  }

  /** The MLP on N points, in float64. */
  forward(
    params: ParamSet,
    x: ArrayLike<number>,
    sigma: ArrayLike<number>,
    conds: readonly [number, number][],
  ): { out: Float64Array; cache: ForwardCache } {
    const H = this.hidden;
    const N = conds.length;
    const w1 = params["mlp.0.weight"]!;
    const b1 = params["mlp.0.bias"]!;
    const w2 = params["mlp.2.weight"]!;
    const b2 = params["mlp.2.bias"]!;
    const w3 = params["mlp.4.weight"]!;
    const b3 = params["mlp.4.bias"]!;
    const input = new Float64Array(N * INPUTS);
    const h1 = new Float64Array(N * H);
    const h2 = new Float64Array(N * H);
    const out = new Float64Array(N * OUTPUTS);
    for (let n = 0; n < N; n++) {
      const inp = input.subarray(n * INPUTS, (n + 1) * INPUTS);
      inp.set([x[n * 2]!, x[n * 2 + 1]!, sigma[n]!, conds[n]![0], conds[n]![1]]);
      for (let j = 0; j < H; j++) {
        let z = b1[j]!;
        for (let k = 0; k < INPUTS; k++) z += w1[j * INPUTS + k]! * inp[k]!;
        h1[n * H + j] = Math.tanh(z);
      }
      for (let j = 0; j < H; j++) {
        let z = b2[j]!;
        for (let k = 0; k < H; k++) z += w2[j * H + k]! * h1[n * H + k]!;
        h2[n * H + j] = Math.tanh(z);
      }
      for (let o = 0; o < OUTPUTS; o++) {
        let z = b3[o]!;
        for (let k = 0; k < H; k++) z += w3[o * H + k]! * h2[n * H + k]!;
        out[n * OUTPUTS + o] = z;
      }
    }
    return { out, cache: { input, h1, h2 } };
  }

  /** Parameter gradients from d loss/d output, by reverse-mode through the MLP. */
  backward(params: ParamSet, cache: ForwardCache, gradOut: ArrayLike<number>): ParamSet {
    const H = this.hidden;
    const N = cache.input.length / INPUTS;
    const w2 = params["mlp.2.weight"]!;
    const w3 = params["mlp.4.weight"]!;
    const gw1 = new Float64Array(H * INPUTS);
    const gb1 = new Float64Array(H);
    const gw2 = new Float64Array(H * H);
    const gb2 = new Float64Array(H);
    const gw3 = new Float64Array(OUTPUTS * H);
    const gb3 = new Float64Array(OUTPUTS);
    const dz2 = new Float64Array(H);
    const dz1 = new Float64Array(H);
    for (let n = 0; n < N; n++) {
      const h1 = cache.h1.subarray(n * H, (n + 1) * H);
      const h2 = cache.h2.subarray(n * H, (n + 1) * H);
      const inp = cache.input.subarray(n * INPUTS, (n + 1) * INPUTS);
      dz2.fill(0);
      for (let o = 0; o < OUTPUTS; o++) {
        const g = gradOut[n * OUTPUTS + o]!;
        if (g === 0) continue;
        gb3[o] = gb3[o]! + g;
        for (let k = 0; k < H; k++) {
          gw3[o * H + k] = gw3[o * H + k]! + g * h2[k]!;
          dz2[k] = dz2[k]! + g * w3[o * H + k]!;
        }
      }
      for (let k = 0; k < H; k++) dz2[k] = dz2[k]! * (1 - h2[k]! * h2[k]!);
      dz1.fill(0);
      for (let j = 0; j < H; j++) {
        const g = dz2[j]!;
        if (g === 0) continue;
        gb2[j] = gb2[j]! + g;
        for (let k = 0; k < H; k++) {
          gw2[j * H + k] = gw2[j * H + k]! + g * h1[k]!;
          dz1[k] = dz1[k]! + g * w2[j * H + k]!;
        }
      }
      for (let j = 0; j < H; j++) {
        const g = dz1[j]! * (1 - h1[j]! * h1[j]!);
        gb1[j] = gb1[j]! + g;
        for (let k = 0; k < INPUTS; k++) gw1[j * INPUTS + k] = gw1[j * INPUTS + k]! + g * inp[k]!;
      }
    }
    return {
      "mlp.0.weight": Float32Array.from(gw1),
      "mlp.0.bias": Float32Array.from(gb1),
      "mlp.2.weight": Float32Array.from(gw2),
      "mlp.2.bias": Float32Array.from(gb2),
      "mlp.4.weight": Float32Array.from(gw3),
      "mlp.4.bias": Float32Array.from(gb3),
    };
  }
}

/** Reads the toy point back from a decoded toy image. */
export function toyPointOf(image: RgbImage): [number, number] {
  return [(image.data[0]! - 128) / PIXEL_SCALE, (image.data[1]! - 128) / PIXEL_SCALE];
}

/**
 * A reward for the toy world that prefers one region: sigmoid(sharpness · (x − threshold)) of the
 * decoded point's x coordinate, in [0, 1].
 */
export class ToyRegionReward implements Reward {
  readonly name = "toy-region";
  constructor(
    readonly threshold = 0.5,
    readonly sharpness = 2,
  ) {}

  scorePoint(x: number): number {
    return 1 / (1 + Math.exp(-this.sharpness * (x - this.threshold)));
  }

  async score(batch: readonly RewardInput[]): Promise<RewardOutput[]> {
    return batch.map((item) => {
      const [x] = toyPointOf(item.edited);
      const s = this.scorePoint(x);
      return { score: s, components: { region: s } };
    });
  }
}
