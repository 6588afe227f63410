import { EditR1Error } from "@edit-r1/engine";

/** A data set file (JSON, JSONL, parquet) that cannot be read; `line` is 1-based where known. */
export class DataFileError extends EditR1Error {
  override readonly name = "DataFileError";
  readonly path: string;
  readonly line: number | undefined;

  constructor(path: string, detail: string, options: { line?: number; cause?: unknown } = {}) {
    super(`${path}${options.line === undefined ? "" : `:${options.line}`}: ${detail}`, {
      cause: options.cause,
    });
    this.path = path;
    this.line = options.line;
  }
}
