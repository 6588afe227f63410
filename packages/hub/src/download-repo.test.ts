import { mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { downloadRepo } from "./download-repo.js";
import { HubError } from "./hub-error.js";
import { listSnapshotFiles, resolveRepoFile, resolveSnapshotDir } from "./resolve-snapshot.js";

const HUB = "https://hub.test";
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const FILES: Record<string, string> = {
  "model_index.json": '{"_class_name":"FluxKontextPipeline"}',
  "transformer/config.json": '{"num_layers":19}',
  "transformer/diffusion_pytorch_model.safetensors": "transformer weights",
  "vae/diffusion_pytorch_model.safetensors": "vae weights",
  "README.md": "# readme",
};

/**
 * A stand-in for the Hub's HTTP API, answering just the requests @huggingface/hub makes for
 * repository info, the file tree, paths-info and file contents (with byte ranges).
 */
function fakeHub(log: string[]): typeof fetch {
  return async (input, init) => {
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const method = init?.method ?? "GET";
    log.push(`${method} ${url.pathname}`);
    const json = (body: unknown) =>
      new Response(JSON.stringify(body), { headers: { "Content-Type": "application/json" } });
    if (url.pathname === "/api/models/org/model/revision/main") {
      return json({
        _id: "1",
        id: "org/model",
        sha: COMMIT,
        private: false,
        lastModified: "2025-01-01T00:00:00Z",
      });
    }
    if (url.pathname === `/api/models/org/model/tree/${COMMIT}`) {
      return json([
        { type: "directory", path: "transformer", oid: "d1", size: 0 },
        { type: "directory", path: "vae", oid: "d2", size: 0 },
        ...Object.entries(FILES).map(([path, text], i) => ({
          type: "file",
          path,
          oid: `oid${i}`,
          size: text.length,
        })),
      ]);
    }
    if (method === "POST" && url.pathname === `/api/models/org/model/paths-info/${COMMIT}`) {
      const { paths } = JSON.parse(String(init?.body)) as { paths: string[] };
      return json(
        paths.map((path) => ({
          type: "file",
          path,
          oid: `oid${Object.keys(FILES).indexOf(path)}`,
          size: FILES[path]?.length,
          lastCommit: { id: "f".repeat(40), title: "older commit that touched the file", date: "2024-01-01" },
        })),
      );
    }
    const prefix = `/org/model/resolve/${COMMIT}/`;
    if (url.pathname.startsWith(prefix)) {
      const text = FILES[decodeURIComponent(url.pathname.slice(prefix.length))];
      if (text === undefined)
        return new Response("no", { status: 404, headers: { "X-Error-Code": "EntryNotFound" } });
      const bytes = Buffer.from(text);
      const etag = `"oid${Object.keys(FILES).indexOf(decodeURIComponent(url.pathname.slice(prefix.length)))}"`;
      const range = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get("Range") ?? "");
      if (!range) return new Response(bytes, { headers: { ETag: etag } });
      const [from, to] = [Number(range[1]), Math.min(Number(range[2]), bytes.length - 1)];
      return new Response(bytes.subarray(from, to + 1), {
        status: 206,
        headers: { "Content-Range": `bytes ${from}-${to}/${bytes.length}`, ETag: etag },
      });
    }
    return new Response(`unexpected ${method} ${url.pathname}`, { status: 500 });
  };
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hub-download-"));
  // downloadFileToCacheDir logs each file at debug level; keep test output clean.
  vi.spyOn(console, "debug").mockImplementation(() => {});
});
afterAll(async () => {
  vi.restoreAllMocks();
  await rm(root, { recursive: true, force: true });
});

describe("downloadRepo", () => {
  it("refuses, without any request, when HF_HUB_OFFLINE is set", async () => {
    const log: string[] = [];
    const err = await downloadRepo("org/model", {
      env: { HF_HUB_OFFLINE: "1" },
      cacheDir: join(root, "offline"),
      fetch: fakeHub(log),
      hubUrl: HUB,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).code).toBe("offline");
    expect((err as Error).message).toContain("HF_HUB_OFFLINE");
    expect(log).toEqual([]);
  });

  it("fetches only the allowed files into one snapshot that then resolves offline", async () => {
    const cacheDir = join(root, "cache");
    const log: string[] = [];
    const seen: string[] = [];
    const result = await downloadRepo("org/model", {
      env: {},
      cacheDir,
      hubUrl: HUB,
      fetch: fakeHub(log),
      allowPatterns: ["transformer/", "*.json"],
      ignorePatterns: ["*.md"],
      onFile: (path) => seen.push(path),
    });
    const expected = [
      "model_index.json",
      "transformer/config.json",
      "transformer/diffusion_pytorch_model.safetensors",
    ];
    expect(result.commit).toBe(COMMIT);
    expect(result.files).toEqual(expected);
    expect(seen).toEqual(expected);
    expect(log.some((l) => l.includes("vae/"))).toBe(false);

    const repoDir = join(cacheDir, "models--org--model");
    expect(await readFile(join(repoDir, "refs", "main"), "utf8")).toBe(COMMIT);
    expect(result.snapshotDir).toBe(join(repoDir, "snapshots", COMMIT));
    const offline = { cacheDir, env: { HF_HUB_OFFLINE: "1" } };
    expect(await resolveSnapshotDir("org/model", offline)).toBe(result.snapshotDir);
    expect(await listSnapshotFiles("org/model", offline)).toEqual(expected);
    const weights = await resolveRepoFile(
      "org/model",
      "transformer/diffusion_pytorch_model.safetensors",
      offline,
    );
    expect(await readFile(weights, "utf8")).toBe("transformer weights");
    expect(await readlink(weights)).toMatch(/\.\.\/blobs\/oid2$/);
  });

  it("reports patterns that match nothing, and Hub failures, as HubErrors", async () => {
    const options = { env: {}, cacheDir: join(root, "c2"), hubUrl: HUB, fetch: fakeHub([]) };
    const none = await downloadRepo("org/model", { ...options, allowPatterns: ["*.ckpt"] }).catch(
      (e: unknown) => e,
    );
    expect((none as HubError).code).toBe("not-found");
    expect((none as Error).message).toContain('["*.ckpt"]');
    const failed = await downloadRepo("org/missing", options).catch((e: unknown) => e);
    expect((failed as HubError).code).toBe("download-failed");
    expect((failed as Error).message).toContain('look up revision "main" for org/missing');
  });
});
