import { describe, expect, it } from "vitest";
import { hubCacheDir, isHubOffline, repoFolderName } from "./cache.js";

describe("hub cache", () => {
  it("names repository folders like the Python client", () => {
    expect(repoFolderName("black-forest-labs/FLUX.1-Kontext-dev")).toBe(
      "models--black-forest-labs--FLUX.1-Kontext-dev",
    );
    expect(repoFolderName("stepfun-ai/GEdit-Bench", "dataset")).toBe("datasets--stepfun-ai--GEdit-Bench");
  });
  it("rejects malformed ids", () => {
    expect(() => repoFolderName("a/b/c")).toThrow(/org\/name/);
  });
  it("resolves the cache folder from the environment", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/x" })).toBe("/x");
    expect(hubCacheDir({ HF_HOME: "/h" })).toBe("/h/hub");
    expect(isHubOffline({ HF_HUB_OFFLINE: "1" })).toBe(true);
    expect(isHubOffline({})).toBe(false);
  });
});
