import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createChatClient } from "./chat-client.js";
import type { ChatCompletionRequest } from "./chat-types.js";
import { JudgeConfigError, JudgeRequestError } from "./errors.js";
import type { JudgeModelReply } from "./judge-model.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createScriptedJudge } from "./scripted-judge.js";

const servers: JudgeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const fast = { retryBaseMs: 1, retryMaxMs: 4, timeoutMs: 2000 };

async function serve(respond: (call: number) => JudgeModelReply, apiKey?: string) {
  const judge = createScriptedJudge({ id: "m", respond: (_req, call) => respond(call) });
  const server = await startJudgeServer({ models: [judge], apiKey });
  servers.push(server);
  return { judge, server };
}

const req: ChatCompletionRequest = {
  model: "m",
  messages: [{ role: "user", content: "rate" }],
  max_tokens: 1,
  logprobs: true,
  top_logprobs: 5,
};

function firstToken(body: unknown): string {
  return (body as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
}

describe("chat client retries", () => {
  it("retries 500s and 503s, then succeeds, counting retries", async () => {
    const { server, judge } = await serve((call) =>
      call < 2 ? { fault: "status", status: call === 0 ? 500 : 503 } : { distribution: [0, 0, 1] },
    );
    const client = createChatClient({ baseUrl: server.url, ...fast });
    const result = await client.complete(req);
    expect(firstToken(result.body)).toBe("2");
    expect(result.attempts).toBe(3);
    expect(judge.calls).toHaveLength(3);
    const stats = client.stats();
    expect(stats).toMatchObject({ calls: 1, succeeded: 1, failed: 0, attempts: 3, retries: 2 });
    expect(stats.httpErrors).toEqual({ "500": 1, "503": 1 });
    expect(stats.latencyMs.count).toBe(1);
  });

  it("gives up after maxRetries with the server's message and status", async () => {
    const { server, judge } = await serve(() => ({ fault: "status", status: 502, message: "upstream gone" }));
    const client = createChatClient({ baseUrl: server.url, ...fast, maxRetries: 2 });
    const err = await client.complete(req).catch((e) => e);
    expect(err).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(/HTTP 502 .*upstream gone.*gave up after 3 attempts/);
    expect(err.status).toBe(502);
    expect(err.attempts).toBe(3);
    expect(judge.calls).toHaveLength(3);
    expect(client.stats()).toMatchObject({ failed: 1, retries: 2 });
  });

  it("does not retry 4xx other than 408/429", async () => {
    const { server, judge } = await serve(() => ({
      fault: "status",
      status: 400,
      message: "context too long",
    }));
    const client = createChatClient({ baseUrl: server.url, ...fast });
    const err = await client.complete(req).catch((e) => e);
    expect(err).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(/context too long.*not retried/);
    expect(err.retryable).toBe(false);
    expect(judge.calls).toHaveLength(1);
  });

  it("retries 429 and waits at least Retry-After (capped by retryMaxMs)", async () => {
    const { server } = await serve((call) =>
      call === 0 ? { fault: "status", status: 429, retryAfterS: 0.05 } : { distribution: [1] },
    );
    const client = createChatClient({ baseUrl: server.url, retryBaseMs: 1, retryMaxMs: 1000 });
    const result = await client.complete(req);
    expect(result.attempts).toBe(2);
    expect(result.latencyMs).toBeGreaterThanOrEqual(45);
  });

  it("times out a hanging server per attempt, retries, then fails clearly", async () => {
    const { server, judge } = await serve(() => ({ fault: "hang" }));
    const client = createChatClient({ baseUrl: server.url, ...fast, timeoutMs: 100, maxRetries: 1 });
    const err = await client.complete(req).catch((e) => e);
    expect(err).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(/timed out after 100 ms.*gave up after 2 attempts/);
    expect(judge.calls).toHaveLength(2);
    expect(client.stats().timeouts).toBe(2);
  });

  it("recovers from a hang when the retry is answered", async () => {
    const { server } = await serve((call) => (call === 0 ? { fault: "hang" } : { distribution: [0, 1] }));
    const client = createChatClient({ baseUrl: server.url, ...fast, timeoutMs: 100 });
    expect(firstToken((await client.complete(req)).body)).toBe("1");
  });

  it("retries malformed JSON and dropped connections", async () => {
    const { server } = await serve((call) =>
      call === 0
        ? { fault: "malformed-json" }
        : call === 1
          ? { fault: "drop-connection" }
          : { distribution: [0, 0, 0, 1] },
    );
    const client = createChatClient({ baseUrl: server.url, ...fast });
    const result = await client.complete(req);
    expect(firstToken(result.body)).toBe("3");
    const stats = client.stats();
    expect(stats.malformedBodies + stats.connectionErrors).toBe(2);
    expect(stats.malformedBodies).toBeGreaterThanOrEqual(1);
  });

  it("fails with a connection error when nothing listens", async () => {
    const { server } = await serve(() => ({ distribution: [1] }));
    const url = server.url;
    await servers.pop()?.close();
    const client = createChatClient({ baseUrl: url, ...fast, maxRetries: 2 });
    const err = await client.complete(req).catch((e) => e);
    expect(err).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(/connection to .* failed \(ECONNREFUSED\).*gave up after 3 attempts/);
    expect(client.stats().connectionErrors).toBe(3);
  });

  it("stops at once when the caller aborts, without retrying", async () => {
    const { server, judge } = await serve(() => ({ fault: "hang" }));
    const client = createChatClient({ baseUrl: server.url, ...fast });
    const controller = new AbortController();
    const pending = client.complete(req, { signal: controller.signal }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 50));
    controller.abort(new Error("run cancelled"));
    const err = await pending;
    expect(err.message).toBe("run cancelled");
    expect(judge.calls).toHaveLength(1);
  });
});

describe("chat client requests", () => {
  it("sends the bearer key, and a wrong key fails without retry and without the key in the message", async () => {
    const { server } = await serve(() => ({ distribution: [1] }), "key-123");
    const ok = createChatClient({ baseUrl: server.url, apiKey: "key-123", ...fast });
    expect(await ok.listModels()).toEqual(["m"]);
    const wrong = createChatClient({ baseUrl: server.url, apiKey: "wrong-key-456", ...fast });
    const err = await wrong.complete(req).catch((e) => e);
    expect(err.status).toBe(401);
    expect(err.attempts).toBe(1);
    expect(err.message).not.toContain("wrong-key-456");
  });

  it("holds at most `concurrency` requests in flight", async () => {
    let inFlight = 0;
    let peak = 0;
    const judge = createScriptedJudge({
      id: "m",
      respond: async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return { distribution: [1] };
      },
    });
    const server = await startJudgeServer({ models: [judge] });
    servers.push(server);
    const client = createChatClient({ baseUrl: server.url, concurrency: 3 });
    await Promise.all(Array.from({ length: 12 }, () => client.complete(req)));
    expect(peak).toBe(3);
    expect(client.stats({ reset: true }).succeeded).toBe(12);
    expect(client.stats().calls).toBe(0);
  });

  it("reads vLLM's older top-level error body", async () => {
    const raw = createServer((_req, res) => {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          object: "error",
          message: "maximum context length is 32768",
          type: "BadRequestError",
          param: null,
          code: 400,
        }),
      );
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
    try {
      const { port } = raw.address() as AddressInfo;
      const client = createChatClient({ baseUrl: `http://127.0.0.1:${port}/v1`, ...fast });
      await expect(client.complete(req)).rejects.toThrow(/HTTP 400 .*maximum context length is 32768/);
    } finally {
      raw.closeAllConnections();
      await new Promise((r) => raw.close(r));
    }
  });

  it("rejects unusable URLs and settings up front", () => {
    expect(() => createChatClient({ baseUrl: "not a url" })).toThrow(JudgeConfigError);
    expect(() => createChatClient({ baseUrl: "ftp://h/v1" })).toThrow(/http or https/);
    expect(() => createChatClient({ baseUrl: "http://u:p@h/v1" })).toThrow(/credentials/);
    expect(() => createChatClient({ baseUrl: "http://h/v1", concurrency: 0 })).toThrow(JudgeConfigError);
  });
});
