import { afterEach, describe, expect, it } from "vitest";
import {
  askBenchJudge,
  benchJudgeOptionsFromSpec,
  completionText,
  connectBenchJudge,
} from "./bench-judge.js";
import { JudgeConfigError, JudgeResponseError } from "./errors.js";
import type { JudgeModelReply } from "./judge-model.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createScriptedJudge } from "./scripted-judge.js";

const servers: JudgeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(respond: (text: string) => JudgeModelReply, ids = ["judge-b"]) {
  const models = ids.map((id) => createScriptedJudge({ id, respond: (req) => respond(req.text) }));
  const server = await startJudgeServer({ models });
  servers.push(server);
  return server;
}

class NotANumber extends Error {}
const parseNumber = (text: string): number => {
  const n = Number(text);
  if (!Number.isFinite(n)) throw new NotANumber(`"${text}" is not a number`);
  return n;
};
const isNotANumber = (err: unknown) => err instanceof NotANumber;

describe("benchJudgeOptionsFromSpec", () => {
  it("reads url, model and numeric options, and takes the key only from a named variable", () => {
    const o = benchJudgeOptionsFromSpec(
      "mllm:http://127.0.0.1:8000/v1?model=gpt-4.1&concurrency=8&retries=3&parseRetries=2&apiKeyEnv=MY_KEY",
      { MY_KEY: "sk-test" },
    );
    expect(o).toMatchObject({
      url: "http://127.0.0.1:8000/v1",
      model: "gpt-4.1",
      concurrency: 8,
      maxRetries: 3,
      parseRetries: 2,
      apiKey: "sk-test",
    });
    expect(() => benchJudgeOptionsFromSpec("mllm?apiKey=sk")).toThrow(/credential/);
    expect(() => benchJudgeOptionsFromSpec("mllm?colour=red")).toThrow(/unknown/);
    expect(() => benchJudgeOptionsFromSpec("mllm?concurrency=many")).toThrow(/not a number/);
    expect(() => benchJudgeOptionsFromSpec("0.5*mllm,shapes")).toThrow(/one mllm part/);
  });
});

describe("completionText", () => {
  it("returns the first choice's text and refuses a completion without one", () => {
    expect(completionText({ choices: [{ message: { content: "7" } }] })).toBe("7");
    expect(() => completionText({ choices: [{ message: { content: null } }] })).toThrow(JudgeResponseError);
  });
});

describe("connectBenchJudge and askBenchJudge", () => {
  it("takes the only served model, applies the benchmark's max_tokens and re-asks unparsable replies", async () => {
    let calls = 0;
    const server = await serve(() => ({ text: ++calls === 1 ? "about seven" : "7" }));
    const judge = await connectBenchJudge({ url: server.url, env: {} }, { maxTokens: 1400 });
    expect(judge.model).toBe("judge-b");
    expect(judge.requestFields).toEqual({ max_tokens: 1400 });
    expect(judge.settings).toMatchObject({ maxTokens: 1400, parseRetries: 1, temperature: "API default" });
    const replies: string[] = [];
    const answer = await askBenchJudge(
      judge,
      [{ type: "text", text: "score?" }],
      parseNumber,
      isNotANumber,
      replies,
    );
    expect(answer).toEqual({ value: 7 });
    expect(replies).toEqual(["about seven", "7"]);
  });

  it("reports unparsable replies and failed requests as outcomes, not throws", async () => {
    const server = await serve((text) =>
      text === "fail" ? { fault: "status", status: 400, message: "flagged" } : { text: "never a number" },
    );
    const judge = await connectBenchJudge({ url: server.url, env: {}, maxRetries: 0, parseRetries: 0 });
    const replies: string[] = [];
    const unparsed = await askBenchJudge(
      judge,
      [{ type: "text", text: "q" }],
      parseNumber,
      isNotANumber,
      replies,
    );
    expect(unparsed).toMatchObject({
      kind: "judge-reply",
      unparsed: true,
      error: '"never a number" is not a number',
    });
    const failed = await askBenchJudge(
      judge,
      [{ type: "text", text: "fail" }],
      parseNumber,
      isNotANumber,
      [],
    );
    expect(failed).toMatchObject({ kind: "judge-request", unparsed: false });
  });

  it("asks for a model name when the server lists several", async () => {
    const server = await serve(() => ({ text: "1" }), ["a", "b"]);
    await expect(connectBenchJudge({ url: server.url, env: {} })).rejects.toThrow(JudgeConfigError);
  });
});
