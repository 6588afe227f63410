/**
 * Issue 19, items 1 and 2: a judge that never answers fails the reward within its deadline, with a retry line
 * per attempt; a client's mistake is a 4xx with an OpenAI error body, and 4xx are not retried.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createChatClient } from "./chat-client.js";
import type { ChatCompletionRequest } from "./chat-types.js";
import { JudgeRequestError, RewardItemError } from "./errors.js";
import { encodeImageDataUrl } from "./image-data-url.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createRewardFromSpec } from "./reward-spec.js";
import { createScriptedJudge } from "./scripted-judge.js";
import { createShapesJudgeModel } from "./shapes-judge.js";
import { patternImage, rewardInput } from "./test-helpers.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

/** A loopback TCP server that accepts every connection, reads what comes, and never writes a byte. */
async function silentServer(): Promise<{ url: string; connections: () => number }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("data", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/v1`, connections: () => connections };
}

const req: ChatCompletionRequest = {
  model: "m",
  messages: [{ role: "user", content: "rate" }],
  max_tokens: 1,
  logprobs: true,
  top_logprobs: 5,
};

describe("a judge that never answers", () => {
  it("prints a retry line per attempt and fails at the total deadline, naming the judge", async () => {
    const { url, connections } = await silentServer();
    const lines: string[] = [];
    const client = createChatClient({
      baseUrl: url,
      timeoutMs: 100,
      deadlineMs: 450,
      maxRetries: 20,
      retryBaseMs: 1,
      retryMaxMs: 4,
      log: (l) => lines.push(l),
    });
    const t0 = performance.now();
    const err = await client.complete(req).catch((e) => e);
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(
      new RegExp(
        `judge at ${url} gave no usable answer within the 0.45 s deadline \\(\\d+ attempts; last: timed out after \\d+ ms`,
      ),
    );
    expect(err.message).toMatch(/raise timeout= \/ deadline= \(seconds\) in the reward spec/);
    // Bounded: the deadline, not 21 attempts × 100 ms.
    expect(elapsed).toBeGreaterThanOrEqual(400);
    expect(elapsed).toBeLessThan(1500);
    expect(lines[0]).toBe(`judge: no answer from ${url} after 0.1 s, retry 1/20`);
    expect(lines[1]).toBe(`judge: no answer from ${url} after 0.1 s, retry 2/20`);
    // A line per retry: every attempt but the last. How many fit in 0.45 s depends on the machine's load (a
    // loaded CI machine fitted 3), so the count is bounded, not fixed.
    expect(lines).toHaveLength(err.attempts - 1);
    expect(lines.length).toBeLessThan(6);
    // Every attempt reached the silent server and timed out (the HTTP agent may open a spare connection).
    expect(connections()).toBeGreaterThanOrEqual(err.attempts);
    expect(client.stats()).toMatchObject({ attempts: err.attempts, timeouts: err.attempts, failed: 1 });
  });

  it("writes a line repeated by concurrent requests once", async () => {
    const { url } = await silentServer();
    const lines: string[] = [];
    const client = createChatClient({
      baseUrl: url,
      timeoutMs: 80,
      deadlineMs: 10_000,
      maxRetries: 1,
      retryBaseMs: 1,
      retryMaxMs: 2,
      log: (l) => lines.push(l),
    });
    const errs = await Promise.all([1, 2, 3, 4].map(() => client.complete(req).catch((e) => e)));
    for (const e of errs) expect(e.message).toMatch(/timed out after 80 ms.*gave up after 2 attempts/);
    expect(lines).toEqual([`judge: no answer from ${url} after 0.08 s, retry 1/1`]);
  });

  it("fails an mllm reward built from a spec with timeout= and deadline= in seconds", async () => {
    const { url } = await silentServer();
    const lines: string[] = [];
    const reward = await createRewardFromSpec(`mllm:${url}?model=x&timeout=0.1&deadline=1.5`, {
      env: {},
      log: (l) => lines.push(l),
    });
    const err = await reward.score([rewardInput("a", 1), rewardInput("b", 2)]).catch((e) => e);
    expect(err).toBeInstanceOf(RewardItemError);
    expect(err.message).toMatch(/could not score item "[ab]": judge at .* within the 1.5 s deadline/);
    expect(lines[0]).toBe(`judge: no answer from ${url} after 0.1 s, retry 1/5`);
  });
});

describe("client mistakes are 4xx and are not retried", () => {
  async function shapesServer(): Promise<JudgeServer> {
    const server = await startJudgeServer({ models: [createShapesJudgeModel("shapes")] });
    cleanups.push(() => server.close());
    return server;
  }

  async function shapesRequest(text: string): Promise<ChatCompletionRequest> {
    const image = await encodeImageDataUrl(patternImage(16, 16, 1), { format: "png" });
    return {
      model: "shapes",
      messages: [
        {
          role: "user",
          content: [
            { type: "image_url", image_url: { url: image } },
            { type: "image_url", image_url: { url: image } },
            { type: "text", text },
          ],
        },
      ],
      max_tokens: 1,
      logprobs: true,
      top_logprobs: 6,
    };
  }

  it("a shapes request without the requirement line gets 400 invalid_request_error, sent once", async () => {
    const server = await shapesServer();
    const body = await shapesRequest("Instruction: make it red\nRate the edit from 0 to 5.");
    const res = await fetch(`${server.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: Record<string, unknown> };
    expect(json.error).toMatchObject({ type: "invalid_request_error", param: "messages" });
    expect(json.error.message).toMatch(/no 'Requirement for this edit:' line/);

    const lines: string[] = [];
    const client = createChatClient({ baseUrl: server.url, retryBaseMs: 1, log: (l) => lines.push(l) });
    const err = await client.complete(body).catch((e) => e);
    expect(err).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(/HTTP 400 .*Requirement for this edit.*\(not retried\)/);
    expect(err).toMatchObject({ status: 400, attempts: 1, retryable: false });
    expect(lines).toEqual([]);
  });

  it("a malformed [shapes:…] tag is 400 too, not 500", async () => {
    const server = await shapesServer();
    const res = await fetch(`${server.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(await shapesRequest("Requirement for this edit: [shapes:v1:garbage]")),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
  });

  it("retries 429 and 5xx, but sends 400, 404 and 409 once", async () => {
    for (const [status, calls] of [
      [400, 1],
      [404, 1],
      [409, 1],
      [422, 1],
      [429, 3],
      [500, 3],
      [503, 3],
    ] as const) {
      const judge = createScriptedJudge({ id: "m", respond: () => ({ fault: "status", status }) });
      const server = await startJudgeServer({ models: [judge] });
      cleanups.push(() => server.close());
      const client = createChatClient({
        baseUrl: server.url,
        maxRetries: 2,
        retryBaseMs: 1,
        retryMaxMs: 2,
        log: () => {},
      });
      const err = await client.complete(req).catch((e) => e);
      expect(err, `HTTP ${status}`).toBeInstanceOf(JudgeRequestError);
      expect(judge.calls.length, `HTTP ${status}`).toBe(calls);
      expect(err.retryable, `HTTP ${status}`).toBe(calls > 1);
    }
  });
});
