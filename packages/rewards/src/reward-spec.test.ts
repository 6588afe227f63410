import type { Reward } from "@edit-r1/core";
import { afterEach, describe, expect, it } from "vitest";
import { JudgeConfigError } from "./errors.js";
import { createFunctionReward } from "./function-reward.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import type { MllmJudgeReward } from "./mllm-judge-reward.js";
import { createRewardFromSpec, mllmOptionsFromSpec, parseRewardSpec } from "./reward-spec.js";
import { createScriptedJudge } from "./scripted-judge.js";
import { rewardInput } from "./test-helpers.js";

const servers: JudgeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe("parseRewardSpec", () => {
  it("reads kind, target and options, with the URL's port and path intact", () => {
    expect(
      parseRewardSpec("mllm:http://127.0.0.1:8000/v1?model=Qwen2.5-VL-32B-Instruct&mode=yes-no"),
    ).toEqual([
      {
        kind: "mllm",
        weight: 1,
        target: "http://127.0.0.1:8000/v1",
        options: { model: "Qwen2.5-VL-32B-Instruct", mode: "yes-no" },
        name: "mllm",
      },
    ]);
  });
  it("reads weighted parts, targetless kinds and names", () => {
    const parts = parseRewardSpec(" 0.8*mllm?model=m&name=judge , 0.2 * shapes ");
    expect(parts.map((p) => [p.kind, p.weight, p.target, p.name])).toEqual([
      ["mllm", 0.8, undefined, "judge"],
      ["shapes", 0.2, undefined, "shapes"],
    ]);
  });
  it("rejects malformed parts and credentials in the spec", () => {
    expect(() => parseRewardSpec("")).toThrow(JudgeConfigError);
    expect(() => parseRewardSpec("mllm,,shapes")).toThrow(/empty part/);
    expect(() => parseRewardSpec("-1*mllm")).toThrow(/malformed/);
    expect(() => parseRewardSpec("mllm:http://h/v1?api_key=sk-123")).toThrow(/credential/);
    expect(() => parseRewardSpec("mllm?apiKey=sk-1")).toThrow(/credential/);
    expect(() => parseRewardSpec("mllm?token=t")).toThrow(/credential/);
  });
});

describe("mllmOptionsFromSpec", () => {
  it("maps options to MllmJudgeOptions", () => {
    const [part] = parseRewardSpec(
      "mllm:http://h:1/v1?model=m&mode=cot-score-sample&concurrency=4&timeoutMs=900&retries=2&topLogprobs=10&maxTokens=64&temperature=0.7&seed=3&format=png&maxSide=512&cache=off&apiKeyEnv=MY_KEY",
    );
    const o = mllmOptionsFromSpec(part, { MY_KEY: "k" });
    expect(o).toMatchObject({
      url: "http://h:1/v1",
      model: "m",
      mode: "cot-score-sample",
      concurrency: 4,
      timeoutMs: 900,
      maxRetries: 2,
      topLogprobs: 10,
      maxTokens: 64,
      temperature: 0.7,
      seed: 3,
      image: { format: "png", maxSide: 512 },
      cache: false,
      apiKey: "k",
    });
  });
  it("rejects unknown options, modes, numbers and unset key variables", () => {
    const one = (s: string) => parseRewardSpec(s)[0];
    expect(() => mllmOptionsFromSpec(one("mllm?modle=x"), {})).toThrow(/"modle" is unknown/);
    expect(() => mllmOptionsFromSpec(one("mllm?mode=vibes"), {})).toThrow(/mode=vibes is unknown/);
    expect(() => mllmOptionsFromSpec(one("mllm?concurrency=lots"), {})).toThrow(/not a number/);
    expect(() => mllmOptionsFromSpec(one("mllm?apiKeyEnv=NOPE"), {})).toThrow(/unset environment variable/);
  });

  it("reads timeout= and deadline= in seconds, and refuses zero, negatives and both timeout spellings", () => {
    const one = (s: string) => parseRewardSpec(s)[0];
    expect(mllmOptionsFromSpec(one("mllm?timeout=90&deadline=600"), {})).toMatchObject({
      timeoutMs: 90_000,
      deadlineMs: 600_000,
    });
    expect(mllmOptionsFromSpec(one("mllm?timeoutMs=2500"), {}).timeoutMs).toBe(2500);
    expect(() => mllmOptionsFromSpec(one("mllm?timeout=0"), {})).toThrow(
      /timeout=0 must be a number of seconds > 0/,
    );
    expect(() => mllmOptionsFromSpec(one("mllm?deadline=-5"), {})).toThrow(/deadline=-5 must be/);
    expect(() => mllmOptionsFromSpec(one("mllm?timeout=1&timeoutMs=1000"), {})).toThrow(/keep one/);
  });
});

describe("createRewardFromSpec", () => {
  it("builds an mllm reward that scores against a judge server", async () => {
    const judge = createScriptedJudge({
      id: "shapes",
      respond: () => ({ distribution: [0, 0, 1, 0, 0, 1] }),
    });
    const server = await startJudgeServer({ models: [judge] });
    servers.push(server);
    const reward = (await createRewardFromSpec(`mllm:${server.url}?model=shapes`, {
      env: {},
    })) as MllmJudgeReward;
    expect(reward.name).toBe("mllm");
    expect(reward.settings.model).toBe("shapes");
    const [out] = await reward.score([rewardInput("a", 1)]);
    expect(out.score).toBeCloseTo((2 * 0.5 + 5 * 0.5) / 5, 12);
  });

  it("composes weighted parts, with other kinds from factories", async () => {
    const judge = createScriptedJudge({ id: "j", respond: () => ({ distribution: [0, 0, 0, 0, 0, 1] }) });
    const server = await startJudgeServer({ models: [judge] });
    servers.push(server);
    const factories = { rule: (): Reward => createFunctionReward("rule", () => 0) };
    const reward = await createRewardFromSpec("3*mllm?model=j,1*rule", {
      factories,
      env: { EDIT_R1_JUDGE_URL: server.url },
    });
    const [out] = await reward.score([rewardInput("a", 1)]);
    expect(out.score).toBeCloseTo(0.75, 12);
    expect(out.components).toEqual({ mllm: 1, rule: 0 });
  });

  it("names the unknown kind and the known ones", async () => {
    await expect(createRewardFromSpec("clip", { env: {} })).rejects.toThrow(
      /"clip" is unknown; known kinds: mllm/,
    );
  });
});
