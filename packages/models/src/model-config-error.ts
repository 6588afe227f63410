/** A config.json that a builder cannot honour; the message names the file, the key and the value found. */
export class ModelConfigError extends Error {
  override readonly name = "ModelConfigError";
}
