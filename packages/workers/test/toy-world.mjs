// The toy world the workers tests train in: core's ToyFlowPolicy on four prompts. Shared by the tests (the
// trainer's side) and test/toy-worker.mjs (a worker process), so both build the same policy and prompts.
import { promptSetFromRequests, samplerByName, ToyFlowPolicy } from "@edit-r1/core";

const blank = { width: 1, height: 1, data: new Uint8Array(3) };
export const toyRequests = ["move it right", "push right", "go east", "shift the dot"].map(
  (instruction, i) => ({
    key: `p${i}`,
    instruction,
    source: blank,
  }),
);
export const toyPrompts = promptSetFromRequests(toyRequests);
export const toySpec = { adapter: "toy", options: {}, sampler: "euler", data: "toy-world" };

/**
 * The worker's loader. `onRollout(requests)` runs as each rollout starts and may wait (a slow GPU, or a
 * worker to kill mid-job).
 */
export function loadToy(onRollout) {
  return async (spec) => {
    if (spec.adapter !== "toy") throw new Error(`toy worker: cannot load adapter ${spec.adapter}`);
    const sampler = samplerByName(spec.sampler);
    return {
      policy: new ToyFlowPolicy(),
      sampler: {
        name: sampler.name,
        async sample(noise, sigmas, velocity) {
          await onRollout?.();
          return sampler.sample(noise, sigmas, velocity);
        },
      },
      prompts: toyPrompts,
    };
  };
}
