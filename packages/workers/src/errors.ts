import { EditR1Error } from "@edit-r1/core";

/** A --queue/--workers URL or a worker setting that cannot work; the message names it and what to write. */
export class WorkersConfigError extends EditR1Error {
  override name = "WorkersConfigError";
}

/** Redis did not answer in time; the run stops, its last checkpoint intact. */
export class RedisUnreachableError extends EditR1Error {
  override name = "RedisUnreachableError";
}

/** A rollout job failed on the workers after all its attempts, or no worker finished it in time. */
export class RolloutJobError extends EditR1Error {
  override name = "RolloutJobError";
}
