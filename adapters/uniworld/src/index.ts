export {
  adapter,
  createUniWorldAdapter,
  LORA_SCALE_CONVENTION,
  type UniWorldAdapterSettings,
} from "./adapter.js";
export { releasedLoraModules, writeReleasedFormLora, writeUniWorldReplica } from "./replica.js";
export {
  BUNDLED_LORA_FOLDER,
  checkBase,
  RELEASED_LORA_FILES,
  RELEASED_LORAS,
  resolveUniWorldLora,
  UNIWORLD_BASES,
  type UniWorldBase,
  UniWorldError,
  type UniWorldLora,
} from "./uniworld-lora.js";
