import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { RewardInput } from "@edit-r1/core";
import { afterEach, describe, expect, it } from "vitest";
import { JudgeConfigError, JudgeRequestError, JudgeResponseError, RewardItemError } from "./errors.js";
import { type JudgeModelReply, type JudgeModelRequest, parseJudgePrompt } from "./judge-model.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createMllmJudgeReward, type MllmJudgeOptions, type MllmJudgeRaw } from "./mllm-judge-reward.js";
import { createScriptedJudge } from "./scripted-judge.js";
import { editR1Score, rewardInput } from "./test-helpers.js";

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

const fast = { retryBaseMs: 1, retryMaxMs: 4, timeoutMs: 2000, env: {} };

/** A judge whose distribution depends on the instruction, so each item's expected score is known. */
function distributionFor(instruction: string): number[] {
  const n = instruction.length;
  return [1 + (n % 3), 0.5, 2, 1 + (n % 5), 3, 0.25 + (n % 2)];
}

function scoreOf(d: number[]): number {
  return editR1Score(Object.fromEntries(d.map((p, k) => [String(k), Math.log(p)])));
}

async function serve(
  respond: (req: JudgeModelRequest, call: number) => JudgeModelReply | Promise<JudgeModelReply>,
) {
  const judge = createScriptedJudge({ id: "judge-1", respond });
  const server: JudgeServer = await startJudgeServer({ models: [judge] });
  closers.push(() => server.close());
  return { judge, server };
}

function reward(url: string, extra: Partial<MllmJudgeOptions> = {}) {
  return createMllmJudgeReward({ url, model: "judge-1", ...fast, ...extra });
}

const batch = (n: number, offset = 0): RewardInput[] =>
  Array.from({ length: n }, (_, i) =>
    rewardInput(`item-${i + offset}`, i + offset, { instruction: `edit ${"x".repeat(i + offset)}` }),
  );

describe("MLLM judge reward over HTTP", () => {
  it("scores each item as Σ k·p_k / 5 of the judge's distribution", async () => {
    const { judge, server } = await serve((req) => ({
      distribution: distributionFor(parseJudgePrompt(req.text).instruction ?? ""),
    }));
    const r = reward(server.url);
    const items = batch(7);
    const out = await r.score(items);
    expect(out).toHaveLength(7);
    out.forEach((o, i) => {
      const expected = scoreOf(distributionFor(items[i].instruction));
      expect(o.score).toBeCloseTo(expected, 9);
      expect(o.components).toEqual({ mllm: o.score });
      const raw = o.raw as MllmJudgeRaw;
      expect(raw).toMatchObject({
        model: "judge-1",
        mode: "score-logit",
        template: "edit-r1/score-logit@1",
        cached: false,
      });
      expect(raw.distribution).toHaveLength(6);
    });
    // The judge saw original then edited, at their own sizes, and the default prompt.
    const call = judge.calls[0];
    expect(call.images.map((i) => [i.width, i.height])).toEqual([
      [32, 24],
      [32, 24],
    ]);
    expect(call.maxTokens).toBe(1);
    expect(call.temperature).toBe(0);
    expect(call.topLogprobs).toBe(20);
  });

  it("sends the requirement, or 'None', in the prompt", async () => {
    const { judge, server } = await serve(() => ({ distribution: [0, 0, 0, 0, 0, 1] }));
    const r = reward(server.url);
    await r.score([rewardInput("a", 1, { requirement: "only the cup turns red" }), rewardInput("b", 2)]);
    const texts = judge.calls.map((c) => parseJudgePrompt(c.text));
    expect(texts).toContainEqual({ instruction: "make item a red", requirement: "only the cup turns red" });
    expect(texts).toContainEqual({ instruction: "make item b red", requirement: undefined });
  });

  it("caches verdicts by model, template and images, and dedupes identical items in flight", async () => {
    const { judge, server } = await serve(() => ({ distribution: [0, 1, 1] }));
    const r = reward(server.url);
    const item = rewardInput("a", 1);
    const twice = await r.score([item, { ...item, key: "a-copy" }]);
    expect(judge.calls).toHaveLength(1);
    expect(twice[0].score).toBe(twice[1].score);
    const again = await r.score([item]);
    expect(judge.calls).toHaveLength(1);
    expect((again[0].raw as MllmJudgeRaw).cached).toBe(true);
    // Another edited image, another instruction, another judge model: all miss.
    await r.score([rewardInput("a", 1, { edited: rewardInput("z", 77).edited })]);
    await r.score([{ ...item, instruction: "something else" }]);
    expect(judge.calls).toHaveLength(3);
    const stats = r.stats();
    expect(stats.cacheHits).toBe(2);
    expect(stats.items).toBe(5);
    expect(stats.scored).toBe(3);
    const uncached = reward(server.url, { cache: false });
    await uncached.score([item]);
    await uncached.score([item]);
    expect(judge.calls).toHaveLength(5);
  });

  it("takes URL, model and key from the environment, and finds the only model when none is named", async () => {
    const judge = createScriptedJudge({ id: "only-model", respond: () => ({ distribution: [0, 0, 0, 1] }) });
    const server = await startJudgeServer({ models: [judge], apiKey: "env-key" });
    closers.push(() => server.close());
    const env = { EDIT_R1_JUDGE_URL: server.url, EDIT_R1_JUDGE_API_KEY: "env-key" };
    const r = createMllmJudgeReward({ ...fast, env });
    expect(r.settings).toEqual({ url: server.url, model: undefined, apiKey: "set" });
    expect(JSON.stringify(r.settings)).not.toContain("env-key");
    const [out] = await r.score([rewardInput("a", 1)]);
    expect(out.score).toBeCloseTo(3 / 5, 12);
    expect((out.raw as MllmJudgeRaw).model).toBe("only-model");
  });

  it("refuses to guess among several models, and needs a URL", async () => {
    const server = await startJudgeServer({
      models: [createScriptedJudge({ id: "a" }), createScriptedJudge({ id: "b" })],
    });
    closers.push(() => server.close());
    const r = createMllmJudgeReward({ ...fast, url: server.url });
    await expect(r.score([rewardInput("x", 1)])).rejects.toThrow(/serves 2 models \(a, b\)/);
    expect(() => createMllmJudgeReward({ env: {} })).toThrow(/EDIT_R1_JUDGE_URL/);
    expect(() => createMllmJudgeReward({ env: {} })).toThrow(JudgeConfigError);
  });

  it("runs every ablation mode end to end", async () => {
    const { server } = await serve((req): JudgeModelReply => {
      if (req.text.includes("Yes or No")) return { distribution: { Yes: 0.3, No: 0.1, Maybe: 0.6 } };
      if (req.text.includes("explain"))
        return { text: "It has 2 cats.\nScore: 4", distribution: { "4": 0.5, "2": 0.5 } };
      return { text: "3", distribution: { "3": 0.9, "5": 0.1 } };
    });
    const item = [rewardInput("a", 1)];
    const score = async (mode: MllmJudgeOptions["mode"]) =>
      (await reward(server.url, { mode }).score(item))[0].score;
    expect(await score("yes-no")).toBeCloseTo(0.75, 9);
    expect(await score("score-sample")).toBeCloseTo(3 / 5, 12);
    expect(await score("cot-score-sample")).toBeCloseTo(4 / 5, 12);
    expect(await score("cot-score-logit")).toBeCloseTo((0.5 * 4 + 0.5 * 2) / 5, 9);
    expect(await score("score-logit")).toBeCloseTo((0.9 * 3 + 0.1 * 5) / 5, 9);
  });
});

describe("MLLM judge reward faults: retries, then clear errors, nothing silently scored", () => {
  it("retries 500s and hangs and still scores", async () => {
    const { judge, server } = await serve((_req, call) =>
      call === 0
        ? { fault: "status", status: 500 }
        : call === 1
          ? { fault: "hang" }
          : { distribution: [0, 0, 1] },
    );
    const r = reward(server.url, { timeoutMs: 150 });
    const [out] = await r.score([rewardInput("a", 1)]);
    expect(out.score).toBeCloseTo(2 / 5, 12);
    expect((out.raw as MllmJudgeRaw).attempts).toBe(3);
    expect(judge.calls).toHaveLength(3);
    expect(r.stats().http).toMatchObject({ retries: 2, timeouts: 1 });
  });

  it("fails the batch naming the item when the judge keeps failing", async () => {
    const { server } = await serve((req) =>
      parseJudgePrompt(req.text).instruction?.endsWith("item bad red")
        ? { fault: "status", status: 503 }
        : { distribution: [1, 1] },
    );
    const r = reward(server.url, { maxRetries: 2 });
    const err = await r.score([rewardInput("good", 1), rewardInput("bad", 2)]).catch((e) => e);
    expect(err).toBeInstanceOf(RewardItemError);
    expect(err.key).toBe("bad");
    expect(err.message).toMatch(/could not score item "bad".*HTTP 503/);
    expect(err.cause).toBeInstanceOf(JudgeRequestError);
    expect(r.stats()).toMatchObject({ failed: 1, failuresByKind: { JudgeRequestError: 1 } });
  });

  it("fails on missing logprobs without retrying and without a score", async () => {
    const { judge, server } = await serve(() => ({ fault: "no-logprobs", text: "5" }));
    const err = await reward(server.url)
      .score([rewardInput("a", 1)])
      .catch((e) => e);
    expect(err).toBeInstanceOf(RewardItemError);
    expect(err.cause).toBeInstanceOf(JudgeResponseError);
    expect(err.message).toMatch(/no choices\[0\]\.logprobs\.content/);
    expect(judge.calls).toHaveLength(1);
  });

  it("fails when no digit is among the top logprobs", async () => {
    const { server } = await serve(() => ({ distribution: { The: 0.7, Sure: 0.3 } }));
    const err = await reward(server.url)
      .score([rewardInput("a", 1)])
      .catch((e) => e);
    expect(err.cause).toBeInstanceOf(JudgeResponseError);
    expect(err.message).toMatch(/none of the score tokens 0–5 .*"The"/);
  });

  it("retries malformed JSON, then fails clearly", async () => {
    const { judge, server } = await serve(() => ({ fault: "malformed-json" }));
    const err = await reward(server.url, { maxRetries: 3 })
      .score([rewardInput("a", 1)])
      .catch((e) => e);
    expect(err.message).toMatch(/unreadable JSON.*gave up after 4 attempts/);
    expect(judge.calls).toHaveLength(4);
  });

  it("fails with a connection error when the server dies mid-run, keeping the items scored before", async () => {
    let server: JudgeServer | undefined;
    const judge = createScriptedJudge({
      id: "judge-1",
      respond: async (_req, call) => {
        if (call === 5) void server?.close();
        return call >= 5 ? { fault: "hang" } : { distribution: [0, 0, 0, 0, 1] };
      },
    });
    server = await startJudgeServer({ models: [judge] });
    closers.push(() => server.close());
    const r = reward(server.url, { concurrency: 1, maxRetries: 2 });
    const first = await r.score(batch(5));
    expect(first.every((o) => o.score === 4 / 5)).toBe(true);
    const err = await r.score(batch(5, 5)).catch((e) => e);
    expect(err).toBeInstanceOf(RewardItemError);
    expect(err.cause).toBeInstanceOf(JudgeRequestError);
    expect(err.message).toMatch(/connection to .* failed|gave up after 3 attempts/);
    // Scored items stay cached: a restarted run does not pay for them again.
    const again = await r.score(batch(5));
    expect(again.every((o) => (o.raw as MllmJudgeRaw).cached)).toBe(true);
  });

  it("propagates the caller's abort", async () => {
    const { server } = await serve(() => ({ fault: "hang" }));
    const controller = new AbortController();
    const pending = reward(server.url)
      .score([rewardInput("a", 1)], { signal: controller.signal })
      .catch((e) => e);
    setTimeout(() => controller.abort(new Error("stop the run")), 30);
    expect((await pending).message).toBe("stop the run");
  });
});

describe("real server formats over HTTP", () => {
  async function replay(file: string): Promise<{ url: string; body: Record<string, unknown> }> {
    const body = JSON.parse(readFileSync(new URL(`./testdata/${file}`, import.meta.url), "utf8"));
    const server: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, body };
  }

  for (const file of ["vllm-chat-completion-score-logit.json", "openai-chat-completion-score-logit.json"]) {
    it(`scores ${file}`, async () => {
      const { url, body } = await replay(file);
      // biome-ignore lint/suspicious/noExplicitAny: walking a JSON fixture
      const top = (body as any).choices[0].logprobs.content[0].top_logprobs as Array<{
        token: string;
        logprob: number;
      }>;
      const expected = editR1Score(
        Object.fromEntries(top.filter((t) => /^\d$/.test(t.token)).map((t) => [t.token, t.logprob])),
      );
      const [out] = await reward(url).score([rewardInput("a", 1)]);
      expect(out.score).toBeCloseTo(expected, 12);
    });
  }
});
