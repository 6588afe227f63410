import { nn, type Tensor } from "@edit-r1/engine";
import type { GraphWeights } from "./graph-weights.js";
import type { LoraSet } from "./lora.js";

/**
 * The one layer models adds to the engine's `nn`: a Linear that finds its weights by checkpoint key and,
 * when its module is a LoRA target, becomes a LoRA linear with factor inputs named by PEFT key.
 */

/** What a module needs to find its weights and, when targeted, its LoRA factors. */
export interface ModuleContext {
  weights: GraphWeights;
  lora?: LoraSet | undefined;
}

/** y = x Wᵀ + b (+ scale·(x Aᵀ) Bᵀ when `name` is a LoRA target), weights `${name}.weight` [out, in] and `.bias`. */
export function linear(
  ctx: ModuleContext,
  name: string,
  x: Tensor,
  outFeatures: number,
  bias = true,
): Tensor {
  const inFeatures = x.shape[x.rank - 1]!;
  return x.graph.scope(name, () => {
    const w = ctx.weights.get(`${name}.weight`, [outFeatures, inFeatures]);
    const b = bias ? ctx.weights.get(`${name}.bias`, [outFeatures]) : undefined;
    const lora = ctx.lora?.factors(name, inFeatures, outFeatures);
    return lora ? nn.loraLinear(x, w, b, lora) : nn.linear(x, w, b);
  });
}
