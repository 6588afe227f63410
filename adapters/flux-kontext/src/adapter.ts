import { type Adapter, INTERFACE_VERSION } from "@edit-r1/core";
import { EDIT_R1_LORA_TARGETS } from "@edit-r1/models";
import { loadFluxKontext } from "./flux-kontext-editor.js";
import { PREFERRED_KONTEXT_RESOLUTIONS } from "./kontext-resolution.js";

/** The Hub repository loaded when no --model is given. */
export const FLUX_KONTEXT_REPO = "black-forest-labs/FLUX.1-Kontext-dev";

/** FLUX.1-Kontext-dev as a core Adapter: what `edit-r1 edit|bench --adapter flux-kontext` loads. */
export const adapter: Adapter = {
  name: "flux-kontext",
  interfaceVersion: INTERFACE_VERSION,
  capabilities: {
    guidance: "distilled",
    resolutions: PREFERRED_KONTEXT_RESOLUTIONS.map((r) => [r[0], r[1]] as const),
    loraTargets: EDIT_R1_LORA_TARGETS,
    weightDtypes: ["bfloat16", "float16", "float32"],
    devices: ["cpu", "cuda"],
    // The fused NFT policy for Kontext is not wired yet (one velocity spec per resolution bucket).
    trainable: false,
  },
  loadEditor: (options = {}) =>
    loadFluxKontext({
      model: options.model ?? FLUX_KONTEXT_REPO,
      device: options.device,
      lora: options.lora,
      loraScale: options.loraScale,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.steps !== undefined ? { steps: options.steps } : {}),
    }),
};
