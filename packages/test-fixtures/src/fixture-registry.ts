/**
 * What the repository's tests claim in a fixtures folder. A test that checks a new fixture kind or a new
 * algorithms.json key registers it here, so `auditFixtures` can tell a fixture nobody checks (a typo in
 * `kind`, a key without a handler) from one that is covered.
 */

/** Who checks a kind of fixture. */
export interface FixtureClaim {
  /** The package whose tests check it. */
  owner: string;
  /** Those tests, from the repository root. */
  tests: readonly string[];
  /** What the fixture holds (fixtures/README.md has the details). */
  what: string;
  /**
   * The repository has no case of this kind: only held-out folders (EDIT_R1_FIXTURES) bring them, and the
   * tests check whatever cases the folder holds. Say here why there is no public case.
   */
  heldOutOnly?: string;
}

/** This file, from the repository root: where a new kind or key is registered. */
export const REGISTRY_FILE = "packages/test-fixtures/src/fixture-registry.ts";

/** Model fixture folders, by the `kind` in their meta.json. */
export const MODEL_FIXTURE_KINDS = {
  "flux-transformer": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/flux-transformer.test.ts", "packages/models/src/flux-bfl-weights.test.ts"],
    what: "diffusers FluxTransformer2DModel (FLUX.1 / Kontext) forward",
  },
  "qwenimage-transformer": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/qwen-image-transformer.test.ts"],
    what: "diffusers QwenImageTransformer2DModel forward",
  },
  "autoencoder-kl": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/autoencoder-kl.test.ts"],
    what: "diffusers AutoencoderKL (FLUX VAE family) encode mean and decode",
  },
  "autoencoder-kl-qwenimage": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/autoencoder-kl-qwen-image.test.ts"],
    what: "diffusers AutoencoderKLQwenImage on one frame: encode mean and decode",
  },
  "qwen2_5_vl-encoder": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/qwen2-5-vl-encoder.test.ts"],
    what: "transformers Qwen2_5_VLForConditionalGeneration: rope index, vision embeddings, last hidden state",
  },
  "clip-text-model": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/clip-text-model.test.ts"],
    what: "transformers CLIPTextModel: last hidden state and pooled output",
  },
  "t5-encoder": {
    owner: "@edit-r1/models",
    tests: ["packages/models/src/t5-encoder.test.ts"],
    what: "transformers T5EncoderModel with and without the attention mask",
  },
  "flux-kontext-pipeline": {
    owner: "@edit-r1/adapter-flux-kontext",
    tests: [
      "adapters/flux-kontext/src/flux-kontext-pipeline.test.ts",
      "packages/models/src/pil-resample.test.ts",
    ],
    what: "diffusers FluxKontextPipeline end to end on tiny components",
  },
  "qwenimage-edit-pipeline": {
    owner: "@edit-r1/adapter-qwen-image-edit",
    tests: [
      "adapters/qwen-image-edit/src/qwen-image-edit-pipeline.test.ts",
      "packages/models/src/pil-resample.test.ts",
    ],
    what: "diffusers QwenImageEditPipeline end to end on tiny components",
  },
  "qwenimage-edit-plus-pipeline": {
    owner: "@edit-r1/adapter-qwen-image-edit",
    tests: [
      "adapters/qwen-image-edit/src/qwen-image-edit-pipeline.test.ts",
      "packages/models/src/pil-resample.test.ts",
    ],
    what: "diffusers QwenImageEditPlusPipeline (several source images) end to end on tiny components",
    heldOutOnly: "the shared reference fixtures hold no Plus case; held-out folders bring them",
  },
} as const satisfies Record<string, FixtureClaim>;

export type ModelFixtureKind = keyof typeof MODEL_FIXTURE_KINDS;

const ALGORITHMS_TEST = ["packages/core/src/algorithms-fixtures.test.ts"] as const;

/** Top-level keys of algorithms.json; each holds a list of cases. */
export const ALGORITHM_KEYS = {
  schedules: { owner: "@edit-r1/core", tests: ALGORITHMS_TEST, what: "flow-matching sigma schedules" },
  samplers: { owner: "@edit-r1/core", tests: ALGORITHMS_TEST, what: "solver trajectories on a toy field" },
  nft_loss: { owner: "@edit-r1/core", tests: ALGORITHMS_TEST, what: "the DiffusionNFT loss and gradient" },
  group_stats: { owner: "@edit-r1/core", tests: ALGORITHMS_TEST, what: "per-prompt advantage statistics" },
  old_policy_decay: { owner: "@edit-r1/core", tests: ALGORITHMS_TEST, what: "the old-policy decay η(step)" },
} as const satisfies Record<string, FixtureClaim>;

export type AlgorithmKey = keyof typeof ALGORITHM_KEYS;

/** Top-level entries of a fixtures folder that are not model fixtures, and what they are. */
export const NON_FIXTURE_ENTRIES: Readonly<Record<string, string>> = {
  "README.md": "what the fixtures are and how tests use them",
  "algorithms.json": "the algorithm fixtures (keys in ALGORITHM_KEYS)",
  images: "sample photographs for tests and examples (images/README.md lists their licences)",
  "qwen2_5_vl-processor.json":
    "Qwen2-VL image processor cases (smart_resize, patch rows), checked by packages/models/src/qwen2-vl-processor.test.ts",
};

export const isModelFixtureKind = (kind: string): kind is ModelFixtureKind =>
  Object.hasOwn(MODEL_FIXTURE_KINDS, kind);

export const isAlgorithmKey = (key: string): key is AlgorithmKey => Object.hasOwn(ALGORITHM_KEYS, key);
