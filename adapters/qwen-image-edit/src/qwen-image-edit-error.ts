import { EditR1Error } from "@edit-r1/core";

/** A Qwen-Image-Edit model folder, setting or request that cannot be used, with what to do about it. */
export class QwenImageEditError extends EditR1Error {
  override readonly name = "QwenImageEditError";
}
