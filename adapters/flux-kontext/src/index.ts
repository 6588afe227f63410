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
} from "./flux-kontext-editor.js";
export { FluxKontextError } from "./flux-kontext-error.js";
export {
  type FluxKontextModel,
  type OpenFluxKontextOptions,
  openFluxKontextModel,
} from "./flux-kontext-model.js";
export { kontextInputSize, PREFERRED_KONTEXT_RESOLUTIONS, type Resolution } from "./kontext-resolution.js";
export { imageTokenIds, packLatents, unpackLatents } from "./latent-packing.js";
export { type FluxLora, loadFluxLora, type SaveFluxLoraOptions, saveFluxLora } from "./lora-file.js";
