import { describe, expect, it } from "vitest";
import { JudgeConfigError } from "./errors.js";
import { describeJudgeSettings, resolveJudgeSettings } from "./judge-settings.js";

describe("judge settings", () => {
  it("prefers options over the environment", () => {
    const env = {
      EDIT_R1_JUDGE_URL: "http://env:1/v1/",
      EDIT_R1_JUDGE_MODEL: "env-model",
      EDIT_R1_JUDGE_API_KEY: "env-key",
    };
    expect(resolveJudgeSettings({}, env)).toEqual({
      url: "http://env:1/v1",
      model: "env-model",
      apiKey: "env-key",
    });
    expect(resolveJudgeSettings({ url: "http://opt:2/v1", model: "m", apiKey: "k" }, env)).toEqual({
      url: "http://opt:2/v1",
      model: "m",
      apiKey: "k",
    });
  });
  it("says how to give a URL when there is none", () => {
    expect(() => resolveJudgeSettings({}, {})).toThrow(JudgeConfigError);
    expect(() => resolveJudgeSettings({}, {})).toThrow(/EDIT_R1_JUDGE_URL/);
  });
  it("describes settings for logs without the key", () => {
    const s = resolveJudgeSettings({ url: "http://h/v1", apiKey: "sk-very-secret" }, {});
    const shown = JSON.stringify(describeJudgeSettings(s));
    expect(shown).not.toContain("sk-very-secret");
    expect(describeJudgeSettings(s)).toEqual({ url: "http://h/v1", model: null, apiKey: "set" });
  });
});
