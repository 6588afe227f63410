import { EditR1Error } from "@edit-r1/engine";

/** What went wrong, so callers (the CLI above all) can branch without parsing messages. */
export type HubErrorCode =
  | "invalid-repo"
  | "invalid-path"
  | "not-cached"
  | "not-found"
  | "incomplete"
  | "missing-shard"
  | "offline"
  | "download-failed";

/** A model or dataset file that cannot be found or fetched; the message says which and what to do. */
export class HubError extends EditR1Error {
  override readonly name = "HubError";
  readonly code: HubErrorCode;
  /** The repository id or local folder asked for. */
  readonly repo: string;

  constructor(code: HubErrorCode, repo: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.code = code;
    this.repo = repo;
  }
}
