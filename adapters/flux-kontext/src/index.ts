export {
  adapter,
  createFluxKontextAdapter,
  FLUX_KONTEXT_REPO,
  type FluxKontextAdapterSettings,
} from "./adapter.js";
export {
  type EditImageOptions,
  editImage,
  FluxKontextEditor,
  type FluxKontextSettings,
  type ImageSize,
  KONTEXT_BENCHMARK_SETTINGS,
  KONTEXT_ROLLOUT_SETTINGS,
  type KontextText,
  type LoadFluxKontextOptions,
  loadFluxKontext,
  type PreparedKontextEdit,
} from "./flux-kontext-editor.js";
export { FluxKontextError } from "./flux-kontext-error.js";
export {
  type FluxKontextModel,
  type OpenFluxKontextOptions,
  openFluxKontextModel,
} from "./flux-kontext-model.js";
export {
  FLUX_KONTEXT_SHAPES,
  type PlanFluxKontextPolicyOptions,
  planFluxKontextPolicy,
  type ShapeOnlyPolicy,
} from "./flux-kontext-plan.js";
export {
  type FluxKontextLoraSettings,
  type FluxKontextPolicy,
  kontextBucket,
  type LoadFluxKontextPolicyOptions,
  loadFluxKontextPolicy,
} from "./flux-kontext-policy.js";
export { kontextInputSize, PREFERRED_KONTEXT_RESOLUTIONS, type Resolution } from "./kontext-resolution.js";
export {
  autoencoderKLWeightShapes,
  clipTextWeightShapes,
  FLUX_KONTEXT_MODEL_INDEX,
  FLUX_KONTEXT_SCHEDULER_CONFIG,
  type FluxKontextReplicaOptions,
  fluxTransformerWeightShapes,
  t5EncoderWeightShapes,
  writeFluxKontextReplica,
} from "./replica.js";
