export { RedisUnreachableError, RolloutJobError, WorkersConfigError } from "./errors.js";
export {
  decodeResult,
  encodeResult,
  jobId,
  type PolicySpec,
  type RolloutJobData,
  type RolloutResultData,
} from "./job-data.js";
export { QueueRollouts, type QueueRolloutsOptions } from "./queue-rollouts.js";
export { connectionOptions, DEFAULT_QUEUE_NAME, parseQueueUrl, type QueueLocation } from "./queue-url.js";
export { hasRedisServer, type LocalRedis, startRedisServer } from "./redis-server.js";
export { type LoadedRolloutPolicy, RolloutWorker, type RolloutWorkerOptions } from "./rollout-worker.js";
export {
  FolderVersionStore,
  HttpVersionStore,
  openVersionStore,
  type VersionStore,
  versionFileName,
} from "./version-store.js";
