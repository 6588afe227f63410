import { EditR1Error } from "@edit-r1/engine";
/** A config.json that a builder cannot honour; the message names the file, the key and the value found. */
export class ModelConfigError extends EditR1Error {
  override readonly name = "ModelConfigError";
}
