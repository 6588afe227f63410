export { hubCacheDir, isHubOffline, type RepoType, repoFolderName } from "./cache.js";
export { DataFileError } from "./data-file-error.js";
export { type DownloadedRepo, type DownloadRepoOptions, downloadRepo } from "./download-repo.js";
export { HubError, type HubErrorCode } from "./hub-error.js";
export { iterateJsonl, readJsonFile, readJsonlFile } from "./json-files.js";
export { matchesPatterns } from "./match-patterns.js";
export {
  type ParquetRow,
  parquetRowCount,
  type ReadParquetOptions,
  readParquetRows,
} from "./read-parquet-rows.js";
export {
  listSnapshotFiles,
  type ResolveOptions,
  resolveRepoFile,
  resolveSnapshotDir,
} from "./resolve-snapshot.js";
export {
  resolveSafetensorsShards,
  resolveSafetensorsWeights,
  type SafetensorsWeights,
  WEIGHT_FILE_NAMES,
} from "./safetensors-shards.js";
