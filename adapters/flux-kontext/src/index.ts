export { adapter, FLUX_KONTEXT_REPO } from "./adapter.js";
export {
  type EditImageOptions,
  editImage,
  FluxKontextEditor,
  type FluxKontextSettings,
  KONTEXT_BENCHMARK_SETTINGS,
  KONTEXT_ROLLOUT_SETTINGS,
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
  type FluxKontextLoraSettings,
  FluxKontextPolicy,
  type LoadFluxKontextPolicyOptions,
  loadFluxKontextPolicy,
} from "./flux-kontext-policy.js";
export { kontextInputSize, PREFERRED_KONTEXT_RESOLUTIONS, type Resolution } from "./kontext-resolution.js";
export {
  buildKontextVelocity,
  type KontextVelocityInputs,
  type KontextVelocityOptions,
} from "./kontext-velocity.js";
export { imageTokenIds, packLatents, unpackLatents } from "./latent-packing.js";
export { type FluxLora, loadFluxLora, type SaveFluxLoraOptions, saveFluxLora } from "./lora-file.js";
