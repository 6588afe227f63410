import { describe, expect, it } from "vitest";
import { JudgeConfigError } from "./errors.js";
import { parseJudgePrompt } from "./judge-model.js";
import {
  checkTemplate,
  defaultTemplate,
  JUDGE_MODES,
  renderTemplate,
  SCORE_LOGIT_TEMPLATE,
} from "./templates.js";

describe("templates", () => {
  it("renders the instruction and requirement, and 'None' for a missing requirement", () => {
    const text = renderTemplate(SCORE_LOGIT_TEMPLATE, {
      instruction: "remove the cat",
      requirement: "keep the sofa",
    });
    expect(text).toContain("Instruction: remove the cat\n");
    expect(text).toContain("Requirement for this edit: keep the sofa\n");
    expect(renderTemplate(SCORE_LOGIT_TEMPLATE, { instruction: "x" })).toContain(
      "Requirement for this edit: None\n",
    );
    expect(renderTemplate(SCORE_LOGIT_TEMPLATE, { instruction: "x", requirement: "  " })).toContain(
      ": None\n",
    );
  });
  it("does not substitute placeholders that appear inside the instruction", () => {
    const text = renderTemplate(SCORE_LOGIT_TEMPLATE, {
      instruction: "write {requirement} on the sign",
      requirement: "R",
    });
    expect(text).toContain("Instruction: write {requirement} on the sign");
  });
  it("asks the default judge for a digit 0–5 only", () => {
    expect(SCORE_LOGIT_TEMPLATE.mode).toBe("score-logit");
    expect(SCORE_LOGIT_TEMPLATE.text).toMatch(/0 to 5/);
    expect(SCORE_LOGIT_TEMPLATE.text).toMatch(/digit .* only/);
  });
  it("has a valid built-in template for every mode, with distinct ids", () => {
    const ids = JUDGE_MODES.map((m) => {
      const t = defaultTemplate(m);
      expect(t.mode).toBe(m);
      checkTemplate(t);
      return t.id;
    });
    expect(new Set(ids).size).toBe(ids.length);
  });
  it("rejects templates without an instruction placeholder or with an unknown mode", () => {
    expect(() => checkTemplate({ id: "t", mode: "score-logit", text: "rate it" })).toThrow(JudgeConfigError);
    // biome-ignore lint/suspicious/noExplicitAny: an invalid mode on purpose
    expect(() => checkTemplate({ id: "t", mode: "vibes" as any, text: "{instruction}" })).toThrow(
      /unknown mode/,
    );
  });
  it("round-trips the fields through parseJudgePrompt for local judges", () => {
    const text = renderTemplate(SCORE_LOGIT_TEMPLATE, {
      instruction: "add a red ball",
      requirement: "one ball",
    });
    expect(parseJudgePrompt(text)).toEqual({ instruction: "add a red ball", requirement: "one ball" });
    expect(
      parseJudgePrompt(renderTemplate(SCORE_LOGIT_TEMPLATE, { instruction: "a" })).requirement,
    ).toBeUndefined();
  });
});
