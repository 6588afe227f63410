import { describeAdapterContract } from "@edit-r1/adapter-kit/testing";
import { closeDefaultRuntime } from "@edit-r1/engine";
import { generateEdits } from "@edit-r1/shapes";
import { tinyAdapter } from "./tiny-adapter.js";
import { TINY_IMAGE_SIZE } from "./tiny-config.js";

describeAdapterContract({
  adapter: tinyAdapter,
  setup: async () => ({
    options: { steps: 4 },
    requests: generateEdits({ seed: 21, count: 3, split: "heldout", size: TINY_IMAGE_SIZE }).map((e) => ({
      key: e.key,
      instruction: e.instruction,
      source: e.source,
    })),
  }),
  teardown: () => closeDefaultRuntime(),
});
