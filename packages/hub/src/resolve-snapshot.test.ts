import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HubError } from "./hub-error.js";
import { listSnapshotFiles, resolveRepoFile, resolveSnapshotDir } from "./resolve-snapshot.js";
import { COMMIT_MAIN, COMMIT_V1, makeFakeCache } from "./test-fake-cache.js";

let root: string;
let cacheDir: string;
let mainSnapshot: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hub-resolve-"));
  cacheDir = join(root, "cache");
  mainSnapshot = await makeFakeCache(
    cacheDir,
    {
      "model_index.json": '{"_class_name":"FluxKontextPipeline"}',
      "transformer/config.json": '{"num_layers":1}',
      "transformer/diffusion_pytorch_model.safetensors": "weights",
      "vae/config.json": "{}",
      "text_encoder/model-00002-of-00002.safetensors": null,
    },
    { refs: { main: COMMIT_MAIN, v1: COMMIT_V1, "refs/pr/1": COMMIT_MAIN } },
  );
  await makeFakeCache(cacheDir, { "model_index.json": '{"v":1}' }, { commit: COMMIT_V1, refs: {} });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function hubError(p: Promise<unknown>): Promise<HubError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof HubError)) throw new Error(`expected a HubError, got ${String(err)}`);
  return err;
}

describe("resolveSnapshotDir", () => {
  it("follows refs to the snapshot of a branch, a tag-like ref or a commit", async () => {
    expect(await resolveSnapshotDir("org/model", { cacheDir })).toBe(mainSnapshot);
    expect(await resolveSnapshotDir("org/model", { cacheDir, revision: "v1" })).toMatch(
      new RegExp(`${COMMIT_V1}$`),
    );
    expect(await resolveSnapshotDir("org/model", { cacheDir, revision: "refs/pr/1" })).toBe(mainSnapshot);
    expect(await resolveSnapshotDir("org/model", { cacheDir, revision: COMMIT_V1 })).toMatch(/b{40}$/);
  });

  it("finds the cache through HF_HUB_CACHE", async () => {
    expect(await resolveSnapshotDir("org/model", { env: { HF_HUB_CACHE: cacheDir } })).toBe(mainSnapshot);
  });

  it("uses an existing local folder as is", async () => {
    const local = join(root, "local-model");
    await mkdir(local, { recursive: true });
    expect(await resolveSnapshotDir(local, { cacheDir })).toBe(local);
    const err = await hubError(resolveSnapshotDir(join(root, "nope"), { cacheDir }));
    expect(err.code).toBe("not-found");
    expect(err.message).toContain("Local folder");
  });

  it("says how to get a repository that is not cached", async () => {
    const err = await hubError(resolveSnapshotDir("org/other", { cacheDir }));
    expect(err.code).toBe("not-cached");
    expect(err.repo).toBe("org/other");
    expect(err.message).toContain(cacheDir);
    expect(err.message).toContain("edit-r1 download org/other");
    expect(err.message).toContain("HF_HUB_CACHE");
  });

  it("lists the cached refs when the revision is unknown, and rejects odd revisions and ids", async () => {
    const err = await hubError(resolveSnapshotDir("org/model", { cacheDir, revision: "dev" }));
    expect(err.code).toBe("not-cached");
    expect(err.message).toMatch(/revision "dev".*main.*v1/);
    expect((await hubError(resolveSnapshotDir("org/model", { cacheDir, revision: "../../x" }))).code).toBe(
      "invalid-path",
    );
    expect((await hubError(resolveSnapshotDir("not a repo!", { cacheDir }))).code).toBe("invalid-repo");
    const missingCommit = await hubError(
      resolveSnapshotDir("org/model", { cacheDir, revision: "c".repeat(40) }),
    );
    expect(missingCommit.message).toContain("no snapshot for commit");
  });
});

describe("resolveRepoFile", () => {
  it("returns the snapshot path of a file, nested ones included, readable through the blob link", async () => {
    const path = await resolveRepoFile("org/model", "transformer/config.json", { cacheDir });
    expect(path).toBe(join(mainSnapshot, "transformer", "config.json"));
    expect(await readFile(path, "utf8")).toBe('{"num_layers":1}');
    expect(await readlink(path)).toMatch(/^\.\.\/\.\.\/\.\.\/blobs\//);
  });

  it("explains a missing file, an interrupted download and a path that escapes", async () => {
    const missing = await hubError(resolveRepoFile("org/model", "tokenizer/tokenizer.json", { cacheDir }));
    expect(missing.code).toBe("not-found");
    expect(missing.message).toContain("--include 'tokenizer/tokenizer.json'");
    const dangling = await hubError(
      resolveRepoFile("org/model", "text_encoder/model-00002-of-00002.safetensors", { cacheDir }),
    );
    expect(dangling.code).toBe("incomplete");
    expect(dangling.message).toContain("interrupted");
    expect((await hubError(resolveRepoFile("org/model", "../../etc/passwd", { cacheDir }))).code).toBe(
      "invalid-path",
    );
    expect((await hubError(resolveRepoFile("org/model", "/etc/passwd", { cacheDir }))).code).toBe(
      "invalid-path",
    );
  });
});

describe("listSnapshotFiles", () => {
  it("lists nested files of a snapshot, leaving out dangling links", async () => {
    expect(await listSnapshotFiles("org/model", { cacheDir })).toEqual([
      "model_index.json",
      "transformer/config.json",
      "transformer/diffusion_pytorch_model.safetensors",
      "vae/config.json",
    ]);
  });

  it("lists a local folder without its .git and .cache folders", async () => {
    const local = join(root, "checkout");
    await mkdir(join(local, ".git"), { recursive: true });
    await mkdir(join(local, ".cache", "huggingface"), { recursive: true });
    await mkdir(join(local, "unet"), { recursive: true });
    await writeFile(join(local, ".git", "HEAD"), "x");
    await writeFile(join(local, ".cache", "huggingface", "x.lock"), "x");
    await writeFile(join(local, ".gitattributes"), "x");
    await writeFile(join(local, "unet", "config.json"), "{}");
    expect(await listSnapshotFiles(local)).toEqual([".gitattributes", "unet/config.json"]);
  });
});
