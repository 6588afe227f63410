import { EditR1Error } from "@edit-r1/core";

/** A LoRA file, an adapter option or a request the shared adapter half cannot use; the message says which and why. */
export class AdapterKitError extends EditR1Error {}
