import { EditR1Error } from "@edit-r1/core";

/**
 * Typed failures of the judge reward. Every message names the input that was wrong and what to do,
 * and none of them carries an API key or request headers, so they are safe to log.
 */

/** A setting, spec string or template is unusable; raised before any request is sent. */
export class JudgeConfigError extends EditR1Error {
  override readonly name = "JudgeConfigError";
}

/**
 * The judge could not be reached or answered with an HTTP error, after all retries when the failure
 * was retryable. `status` is the last HTTP status (undefined for timeouts and connection errors).
 */
export class JudgeRequestError extends EditR1Error {
  override readonly name = "JudgeRequestError";
  readonly status: number | undefined;
  readonly attempts: number;
  readonly retryable: boolean;
  constructor(
    message: string,
    options: { status?: number; attempts: number; retryable: boolean; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.status = options.status;
    this.attempts = options.attempts;
    this.retryable = options.retryable;
  }
}

/**
 * What a judge model was asked cannot be judged, and asking again will not change that (a prompt without the
 * line the judge reads, an image of the wrong size): the client's mistake. The judge server answers it with
 * HTTP 400 and an OpenAI error body, which clients do not retry.
 */
export class JudgeInputError extends EditR1Error {
  override readonly name = "JudgeInputError";
}

/**
 * The judge answered, but the answer cannot be turned into a score (no logprobs, no score token among
 * the candidates, no integer in the text). Never retried: a deterministic judge would answer the same.
 */
export class JudgeResponseError extends EditR1Error {
  override readonly name = "JudgeResponseError";
  /** The part of the response that was inspected, for the run log. */
  readonly response: unknown;
  constructor(message: string, response?: unknown) {
    super(message);
    this.response = response;
  }
}

/** Scoring one item of a batch failed; says which item and keeps the underlying error as `cause`. */
export class RewardItemError extends EditR1Error {
  override readonly name = "RewardItemError";
  readonly key: string;
  constructor(reward: string, key: string, cause: unknown) {
    super(
      `reward "${reward}" could not score item "${key}": ${cause instanceof Error ? cause.message : String(cause)}`,
      {
        cause,
      },
    );
    this.key = key;
  }
}
