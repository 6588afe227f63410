import { EditR1Error } from "./errors.js";
/** What went wrong, so callers can branch without parsing messages. */
export type SafetensorsErrorCode =
  | "io"
  | "truncated"
  | "header-too-large"
  | "header-invalid"
  | "metadata-invalid"
  | "tensor-invalid"
  | "unknown-dtype"
  | "out-of-range"
  | "overlap"
  | "size-mismatch"
  | "missing-tensor"
  | "missing-shard"
  | "invalid-input"
  | "unsupported";

/**
 * A safetensors file (or index, or tensor about to be written) that we refuse to use. The message
 * names the file and, where one is at fault, the tensor, and says what to do about it.
 */
export class SafetensorsError extends EditR1Error {
  override readonly name = "SafetensorsError";
  readonly code: SafetensorsErrorCode;
  readonly file: string;
  readonly tensor: string | undefined;

  constructor(
    code: SafetensorsErrorCode,
    file: string,
    detail: string,
    options: { tensor?: string; hint?: string; cause?: unknown } = {},
  ) {
    const where = options.tensor === undefined ? file : `${file}, tensor "${options.tensor}"`;
    const hint = options.hint ?? defaultHint(code);
    super(`${where}: ${detail}${hint ? ` ${hint}` : ""}`, { cause: options.cause });
    this.code = code;
    this.file = file;
    this.tensor = options.tensor;
  }
}

function defaultHint(code: SafetensorsErrorCode): string {
  switch (code) {
    case "invalid-input":
    case "unsupported":
    case "missing-tensor":
      return "";
    case "missing-shard":
      return "Download the missing shard (or the whole repository) again.";
    case "io":
      return "Check that the file exists and is readable.";
    default:
      return "The file is corrupt, truncated or not a safetensors file; download or write it again.";
  }
}
