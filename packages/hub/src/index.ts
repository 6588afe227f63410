export { hubCacheDir, isHubOffline, type RepoType, repoFolderName } from "./cache.js";
