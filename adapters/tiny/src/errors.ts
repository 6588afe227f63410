import { EditR1Error } from "@edit-r1/core";

/** A request, option or file the tiny adapter cannot work with; the message says which and what to do. */
export class TinyAdapterError extends EditR1Error {}
