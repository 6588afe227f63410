/** A FLUX.1-Kontext model folder, LoRA file, image or setting that the adapter cannot use; the message says what to do. */
export class FluxKontextError extends Error {
  override readonly name = "FluxKontextError";
}
