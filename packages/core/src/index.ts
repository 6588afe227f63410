export { emaDecay, oldPolicyDecay } from "./decay.js";
export {
  type BenchmarkItemResult,
  type BenchmarkReport,
  type EditRequest,
  INTERFACE_VERSION,
  type Reward,
  type RewardInput,
  type RewardOutput,
  type RgbImage,
  type SampleResult,
  type Sampler,
  type VelocityFn,
} from "./types.js";
