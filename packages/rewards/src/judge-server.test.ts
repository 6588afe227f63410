import { afterEach, describe, expect, it } from "vitest";
import { encodeImageDataUrl } from "./image-data-url.js";
import type { JudgeModelReply } from "./judge-model.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createScriptedJudge } from "./scripted-judge.js";
import { patternImage } from "./test-helpers.js";

// biome-ignore lint/suspicious/noExplicitAny: response bodies are walked freely in assertions
type Json = any;

const servers: JudgeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(
  reply: JudgeModelReply | ((text: string) => JudgeModelReply),
  extra: { apiKey?: string; maxBodyBytes?: number } = {},
) {
  const judge = createScriptedJudge({
    id: "judge-a",
    respond: (req) => (typeof reply === "function" ? reply(req.text) : reply),
  });
  const server = await startJudgeServer({ models: [judge], ...extra });
  servers.push(server);
  return { judge, server };
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

function request(extra: Record<string, unknown> = {}) {
  return {
    model: "judge-a",
    messages: [{ role: "user", content: [{ type: "text", text: "rate" }] }],
    max_tokens: 1,
    logprobs: true,
    top_logprobs: 3,
    ...extra,
  };
}

function expectOpenAiError(body: Json, pattern: RegExp) {
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error.message).toMatch(pattern);
  expect(typeof body.error.type).toBe("string");
  expect(body.error).toHaveProperty("param");
  expect(body.error).toHaveProperty("code");
}

describe("judge server", () => {
  it("binds loopback by default and lists its models", async () => {
    const { server } = await serve({ distribution: [1] });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const res = await fetch(`${server.url}/models`);
    const body = (await res.json()) as { object: string; data: Array<{ id: string; object: string }> };
    expect(body.object).toBe("list");
    expect(body.data.map((m) => [m.id, m.object])).toEqual([["judge-a", "model"]]);
  });

  it("answers with the distribution as logprobs of the last token, top-k sorted", async () => {
    const { server } = await serve({ distribution: [0.1, 0, 0.2, 0, 0.6, 0.1] });
    const { status, body } = await post(server.url, request());
    expect(status).toBe(200);
    expect(body.object).toBe("chat.completion");
    const choice = body.choices[0];
    expect(choice.message).toEqual({ role: "assistant", content: "4" });
    const entry = choice.logprobs.content[0];
    expect(entry.token).toBe("4");
    expect(entry.logprob).toBeCloseTo(Math.log(0.6), 12);
    expect(entry.bytes).toEqual([52]);
    expect(entry.top_logprobs.map((t: { token: string }) => t.token)).toEqual(["4", "2", expect.any(String)]);
    expect(Math.exp(entry.top_logprobs[1].logprob)).toBeCloseTo(0.2, 12);
    expect(body.usage.completion_tokens).toBe(1);
  });

  it("renormalises unnormalised distributions and writes -9999 for zero mass", async () => {
    const { server } = await serve({ distribution: { "3": 2, "5": 2, "0": 0 } });
    const { body } = await post(server.url, request({ top_logprobs: 5 }));
    const top = body.choices[0].logprobs.content[0].top_logprobs as Array<{ token: string; logprob: number }>;
    expect(top.find((t) => t.token === "5")?.logprob).toBeCloseTo(Math.log(0.5), 12);
    expect(top.find((t) => t.token === "0")?.logprob).toBe(-9999);
  });

  it("returns text, per-token logprobs, and truncates at max_tokens", async () => {
    const reply: JudgeModelReply = { text: "Looks right.\nScore: 4", distribution: { "4": 0.7, "3": 0.3 } };
    const { server } = await serve(reply);
    const full = await post(server.url, request({ max_tokens: 100 }));
    const content = full.body.choices[0].logprobs.content as Array<{ token: string; logprob: number }>;
    expect(content.map((c) => c.token).join("")).toBe("Looks right.\nScore: 4");
    expect(content.at(-1)?.logprob).toBeCloseTo(Math.log(0.7), 12);
    expect(content[0].logprob).toBe(0);
    expect(full.body.choices[0].finish_reason).toBe("stop");
    const cut = await post(server.url, request({ max_tokens: 2 }));
    expect(cut.body.choices[0].finish_reason).toBe("length");
    expect(cut.body.choices[0].logprobs.content).toHaveLength(2);
  });

  it("returns logprobs: null when they were not asked for", async () => {
    const { server } = await serve({ distribution: [0, 1] });
    const { body } = await post(server.url, request({ logprobs: false, top_logprobs: undefined }));
    expect(body.choices[0].logprobs).toBeNull();
    expect(body.choices[0].message.content).toBe("1");
  });

  it("hands the judge the decoded images in order and the text", async () => {
    const { judge, server } = await serve({ distribution: [1] });
    const a = patternImage(8, 6, 1);
    const b = patternImage(5, 7, 2);
    const content = [
      { type: "image_url", image_url: { url: await encodeImageDataUrl(a, { format: "png" }) } },
      { type: "image_url", image_url: { url: await encodeImageDataUrl(b, { format: "png" }) } },
      { type: "text", text: "Instruction: x" },
    ];
    await post(
      server.url,
      request({
        messages: [
          { role: "system", content: "be fair" },
          { role: "user", content },
        ],
      }),
    );
    expect(judge.calls).toHaveLength(1);
    const call = judge.calls[0];
    expect(call.images.map((i) => [i.width, i.height])).toEqual([
      [8, 6],
      [5, 7],
    ]);
    expect(Buffer.from(call.images[1].data).equals(Buffer.from(b.data))).toBe(true);
    expect(call.text).toBe("Instruction: x");
    expect(call.topLogprobs).toBe(3);
  });

  it("answers bad requests with 4xx and an OpenAI error body", async () => {
    const { server } = await serve({ distribution: [1] });
    const cases: Array<[unknown, number, RegExp]> = [
      ["{not json", 400, /not valid JSON/],
      [request({ model: undefined }), 400, /'model' is required/],
      [request({ model: "nope" }), 404, /`nope` does not exist.*`judge-a`/],
      [request({ messages: [] }), 400, /non-empty array/],
      [request({ top_logprobs: 21 }), 400, /from 0 to 20/],
      [request({ logprobs: false, top_logprobs: 2 }), 400, /'logprobs' must be true/],
      [request({ stream: true }), 400, /stream/],
      [request({ n: 2 }), 400, /n = 1/],
      [request({ max_tokens: 0 }), 400, /max_tokens/],
      [
        request({
          messages: [
            { role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] },
          ],
        }),
        400,
        /not a base64 image data URL/,
      ],
      [request({ messages: [{ role: "user", content: [{ type: "audio" }] }] }), 400, /content\[0\]/],
    ];
    for (const [body, status, message] of cases) {
      const res = await post(server.url, body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expectOpenAiError(res.body, message);
    }
    const route = await fetch(`${server.url}/completions`, { method: "POST" });
    expect(route.status).toBe(404);
    const method = await fetch(`${server.url}/models`, { method: "DELETE" });
    expect(method.status).toBe(405);
  });

  it("limits request size with 413", async () => {
    const { server } = await serve({ distribution: [1] }, { maxBodyBytes: 1000 });
    const res = await post(server.url, request({ messages: [{ role: "user", content: "x".repeat(5000) }] }));
    expect(res.status).toBe(413);
    expectOpenAiError(res.body, /exceeds the limit of 1000 bytes/);
    // Without a content-length (chunked upload) the limit still holds.
    const chunks = [
      new TextEncoder().encode(
        JSON.stringify(request({ messages: [{ role: "user", content: "y".repeat(5000) }] })),
      ),
    ];
    const streamed = await fetch(`${server.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        pull: (c) => {
          const next = chunks.pop();
          if (next) c.enqueue(next);
          else c.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
  });

  it("requires the bearer key when one is set, without echoing it", async () => {
    const { server } = await serve({ distribution: [1] }, { apiKey: "s3cret-key" });
    const none = await post(server.url, request());
    expect(none.status).toBe(401);
    expectOpenAiError(none.body, /API key/);
    expect(JSON.stringify(none.body)).not.toContain("s3cret");
    expect((await post(server.url, request(), { authorization: "Bearer wrong" })).status).toBe(401);
    expect((await post(server.url, request(), { authorization: "Bearer s3cret-key" })).status).toBe(200);
    expect((await fetch(`${server.url}/models`)).status).toBe(401);
  });

  it("turns a judge that throws or answers inconsistently into a 500 error body", async () => {
    const judge = createScriptedJudge({
      id: "judge-a",
      respond: (req) => {
        if (req.text === "throw") throw new Error("model crashed");
        return { text: "7", distribution: [0.5, 0.5] };
      },
    });
    const server = await startJudgeServer({ models: [judge] });
    servers.push(server);
    const thrown = await post(server.url, request({ messages: [{ role: "user", content: "throw" }] }));
    expect(thrown.status).toBe(500);
    expectOpenAiError(thrown.body, /model crashed/);
    const inconsistent = await post(server.url, request());
    expect(inconsistent.status).toBe(500);
    expectOpenAiError(inconsistent.body, /last token is not in its distribution/);
  });

  it("refuses duplicate model ids and an empty model list", async () => {
    const a = createScriptedJudge({ id: "x" });
    await expect(startJudgeServer({ models: [a, a] })).rejects.toThrow(/share the id "x"/);
    await expect(startJudgeServer({ models: [] })).rejects.toThrow(/at least one/);
  });

  it("close() ends hanging requests and closes the models", async () => {
    let closedModels = 0;
    const judge = {
      id: "judge-a",
      judge: () => ({ fault: "hang" as const }),
      close: () => void closedModels++,
    };
    const server = await startJudgeServer({ models: [judge] });
    const pending = fetch(`${server.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request()),
    }).then(
      () => "answered",
      () => "failed",
    );
    await new Promise((r) => setTimeout(r, 50));
    await server.close();
    expect(await pending).toBe("failed");
    expect(closedModels).toBe(1);
  });
});
