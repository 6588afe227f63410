// Test helper (excluded from the build): a small velocity MLP with frozen base weights and LoRA factors,
// written against the VelocityGraphSpec contract exactly as an adapter would.
import { type Graph, nn, ops, type Tensor } from "@edit-r1/engine";
import type { VelocityGraphSpec } from "./graph-policy.js";
import type { ParamSet } from "./params.js";
import { Rng } from "./rng.js";

export interface VelocityMlpOptions {
  tokens: number;
  channels: number;
  condDim: number;
  hidden: number;
  rank: number;
  /** Seed of the frozen base weights. */
  seed: number;
  /** Scale of the output layer's base weights (small: the base flow barely moves the noise). */
  outScale?: number;
}

export interface VelocityMlp {
  spec: VelocityGraphSpec;
  /** PEFT-style LoRA init: A random, B zero (or random with `randomB`, to test gradients away from 0). */
  initialParameters(seed: number, randomB?: boolean): ParamSet;
}

/**
 * v = (W2 + s·B2A2) tanh((W1 + s·B1A1) [x_t, t, cond, 1] + b1) + b2 per token; the constant-1 feature lets
 * the first LoRA act as a trainable bias.
 */
export function velocityMlp(o: VelocityMlpOptions): VelocityMlp {
  const features = o.channels + 1 + o.condDim + 1;
  const rng = new Rng(o.seed);
  const gaussian = (n: number, std: number) => Float32Array.from({ length: n }, () => rng.normal() * std);
  const base = {
    w1: gaussian(o.hidden * features, 1 / Math.sqrt(features)),
    b1: gaussian(o.hidden, 0.1),
    w2: gaussian(o.channels * o.hidden, (o.outScale ?? 1) / Math.sqrt(o.hidden)),
    b2: gaussian(o.channels, 0.05),
  };
  const shapes: Record<string, number[]> = {
    "mlp.0.lora_A.weight": [o.rank, features],
    "mlp.0.lora_B.weight": [o.hidden, o.rank],
    "mlp.2.lora_A.weight": [o.rank, o.hidden],
    "mlp.2.lora_B.weight": [o.channels, o.rank],
  };
  // One set of initializers per graph: the fused step builds three passes into one graph.
  const perGraph = new WeakMap<Graph, Record<keyof typeof base, Tensor>>();
  const weights = (g: Graph) => {
    let w = perGraph.get(g);
    if (!w) {
      w = {
        w1: g.initializer("mlp.0.weight", "float32", [o.hidden, features], base.w1),
        b1: g.initializer("mlp.0.bias", "float32", [o.hidden], base.b1),
        w2: g.initializer("mlp.2.weight", "float32", [o.channels, o.hidden], base.w2),
        b2: g.initializer("mlp.2.bias", "float32", [o.channels], base.b2),
      };
      perGraph.set(g, w);
    }
    return w;
  };
  const scale = 2; // alpha / rank, not 1, so a dropped scale would show
  const spec: VelocityGraphSpec = {
    latentShape: [o.tokens, o.channels],
    conditions: { cond: { dtype: "float32", shape: [o.condDim] } },
    parameters: shapes,
    buildVelocity(g, xt, t, cond, params) {
      const w = weights(g);
      const B = xt.shape[0]!;
      const perToken = (v: Tensor, width: number) =>
        ops.expand(ops.reshape(v, [B, 1, width]), [B, o.tokens, width]);
      const input = ops.concat(
        [
          xt,
          perToken(t, 1),
          perToken(cond.cond!, o.condDim),
          ops.expand(g.constant(1, [1, 1, 1]), [B, o.tokens, 1]),
        ],
        -1,
      );
      const layer = (x: Tensor, weight: Tensor, bias: Tensor, module: string) =>
        params
          ? nn.loraLinear(x, weight, bias, {
              A: params[`${module}.lora_A.weight`]!,
              B: params[`${module}.lora_B.weight`]!,
              scale,
            })
          : nn.linear(x, weight, bias);
      const h = ops.tanh(layer(input, w.w1, w.b1, "mlp.0"));
      return layer(h, w.w2, w.b2, "mlp.2");
    },
  };
  return {
    spec,
    initialParameters(seed, randomB = false) {
      const r = new Rng(seed);
      const out: ParamSet = {};
      for (const [name, shape] of Object.entries(shapes)) {
        const n = shape[0]! * shape[1]!;
        const isA = name.includes("lora_A");
        const std = isA ? 1 / Math.sqrt(shape[1]!) : randomB ? 0.3 : 0;
        out[name] = Float32Array.from({ length: n }, () => (std ? r.normal() * std : 0));
      }
      return out;
    },
  };
}
