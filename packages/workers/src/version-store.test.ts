import { createReadStream, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseQueueUrl } from "./queue-url.js";
import { FolderVersionStore, HttpVersionStore, openVersionStore, versionFileName } from "./version-store.js";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "edit-r1-versions-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const params = (v: number) => ({
  "a.lora_A": Float32Array.from([v, v + 0.5, -v]),
  b: Float32Array.from([v * 2]),
});

describe("version stores", () => {
  it("a folder store round-trips versions, leaves no temporary files and prunes older versions", async () => {
    const dir = join(tempDir(), "versions");
    const store = new FolderVersionStore(dir);
    for (const v of [0, 1, 2, 3]) await store.write(v, params(v));
    expect((await store.read(2))["a.lora_A"]).toEqual(params(2)["a.lora_A"]);
    expect(readdirSync(dir).sort()).toEqual([0, 1, 2, 3].map(versionFileName));
    await store.prune(2);
    expect(readdirSync(dir).sort()).toEqual([2, 3].map(versionFileName));
    await expect(store.read(1)).rejects.toThrow(/version 1 is not in the version store .*versions.*--store/);
  });

  it("an http store reads the versions a static server serves from the trainer's folder, and refuses to write", async () => {
    const dir = join(tempDir(), "served");
    await new FolderVersionStore(dir).write(7, params(7));
    const server: Server = createServer((req, res) => {
      const file = join(dir, (req.url ?? "").replace(/^\/versions\//, ""));
      if (!existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200);
      createReadStream(file).pipe(res);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    try {
      const store = openVersionStore(`http://127.0.0.1:${port}/versions`);
      expect(store).toBeInstanceOf(HttpVersionStore);
      expect((await store.read(7)).b).toEqual(params(7).b);
      await expect(store.read(8)).rejects.toThrow(
        /version 8 from http:\/\/127\.0\.0\.1:\d+\/versions\/v-00000008\.safetensors: HTTP 404/,
      );
      await expect(store.write(9, params(9))).rejects.toThrow(/is a URL, which workers read/);
    } finally {
      server.close();
    }
  });
});

describe("parseQueueUrl", () => {
  it("reads host, port, database, credentials and queue name, and hides the password", () => {
    const loc = parseQueueUrl("redis://user:s3cret@redis.internal:6380/2?queue=run-a");
    expect(loc).toMatchObject({
      host: "redis.internal",
      port: 6380,
      db: 2,
      username: "user",
      password: "s3cret",
      queue: "run-a",
    });
    expect(loc.display).not.toContain("s3cret");
    expect(parseQueueUrl("redis://127.0.0.1")).toMatchObject({
      port: 6379,
      db: 0,
      queue: "edit-r1-rollouts",
    });
  });

  it("refuses other schemes, non-numeric databases and odd queue names, naming the flag", () => {
    expect(() => parseQueueUrl("http://x:1", "--workers")).toThrow(
      /--workers http:\/\/x:1: the scheme must be redis:\/\//,
    );
    expect(() => parseQueueUrl("rediss://x:1")).toThrow(/scheme must be redis/);
    expect(() => parseQueueUrl("not a url")).toThrow(/not a URL/);
    expect(() => parseQueueUrl("redis://x/abc")).toThrow(/database number/);
    expect(() => parseQueueUrl("redis://x?queue=a:b")).toThrow(/queue names/);
  });
});
