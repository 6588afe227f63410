/** Issue 19: a silent judge stops `train` with a clear error at its deadline; `judge serve` flag hygiene. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isLoopbackHost } from "./commands/judge-serve.js";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

const tmp = mkdtempSync(join(tmpdir(), "cli-judge-hardening-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("train against a judge that accepts connections and never answers", () => {
  it("prints retry lines and stops with a clear error at the deadline, writing no step", async () => {
    const sockets = new Set<Socket>();
    const server = createServer((s) => {
      sockets.add(s);
      s.on("data", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`;
    try {
      const config = join(tmp, "small.json");
      writeFileSync(
        config,
        JSON.stringify({ groupSize: 2, promptsPerBatch: 1, rolloutBatches: 1, trainBatchSize: 2 }),
      );
      const out = join(tmp, "silent-judge");
      const c = capture();
      const t0 = performance.now();
      const code = await main(
        [
          "train",
          ...["--steps", "1", "--no-bench", "--config", config, "--out", out],
          ...["--reward", `mllm:${url}?model=x&timeout=0.2&deadline=1`],
        ],
        c.io,
        { env: {} },
      );
      const err = c.err.join("\n");
      expect(code).toBe(1);
      expect(err).toContain(`judge: no answer from ${url} after 0.2 s, retry 1/5`);
      expect(err).toMatch(new RegExp(`judge at ${url} gave no usable answer within the 1 s deadline`));
      expect(performance.now() - t0).toBeLessThan(60_000);
      // Nothing half-written: no checkpoint, no metrics line for a step that was never scored.
      expect(existsSync(join(out, "checkpoints")) ? readdirSync(join(out, "checkpoints")) : []).toEqual([]);
      const metrics = join(out, "metrics.jsonl");
      expect(existsSync(metrics) ? readFileSync(metrics, "utf8") : "").toBe("");
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 120_000);
});

describe("judge serve flags", () => {
  it("--port 99999 is a usage error in words (exit 2), not Node's range error", async () => {
    const c = capture();
    expect(await main(["judge", "serve", "--port", "99999"], c.io)).toBe(2);
    const err = c.err.join("\n");
    expect(err).toMatch(/--port 99999 is not a TCP port; use 1 to 65535, or 0 for any free port/);
    expect(err).not.toMatch(/RangeError|ERR_SOCKET_BAD_PORT|should be >= 0/);
  });

  it("any 127.x address, ::1 and localhost are loopback; other addresses are not", () => {
    for (const h of [
      "127.0.0.1",
      "127.0.0.2",
      "127.255.0.9",
      "localhost",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.2",
    ])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of [
      "0.0.0.0",
      "::",
      "10.0.0.1",
      "192.168.1.2",
      "128.0.0.1",
      "127.0.0.256",
      "example.com",
      "::2",
    ])
      expect(isLoopbackHost(h), h).toBe(false);
  });

  it("--host 127.0.0.2 serves without the network warning", async () => {
    const c = capture();
    const controller = new AbortController();
    const running = main(["judge", "serve", "--host", "127.0.0.2", "--port", "0"], c.io, {
      signal: controller.signal,
    });
    for (let i = 0; i < 3000 && !c.out.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(c.out.join("\n")).toMatch(/at http:\/\/127\.0\.0\.2:\d+\/v1/);
    controller.abort();
    expect(await running).toBe(0);
    expect(c.err.join("\n")).not.toMatch(/warning/);
  });
});
