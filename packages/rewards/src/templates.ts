/**
 * Judge prompt templates. The default is Edit-R1's non-CoT score-logit prompt (algorithm.md §3.2) in our
 * own words: the original image, then the edited image, then this text; the judge answers with one digit
 * 0–5 whose logprobs give the reward. The other modes are the paper's Table 4 ablations.
 */
import { JudgeConfigError } from "./errors.js";

/**
 * How a judge answer becomes a score:
 * - `score-logit`: one token; Σ k·p_k / 5 over the digits 0–5 renormalised among themselves (Edit-R1).
 * - `yes-no`: one token; P(Yes) / (P(Yes) + P(No)).
 * - `score-sample`: the integer the judge wrote, / 5.
 * - `cot-score-logit`: reasoning, then "Score: N"; score-logit over the logprobs of that final digit.
 * - `cot-score-sample`: reasoning, then "Score: N"; N / 5.
 */
export type JudgeMode = "score-logit" | "yes-no" | "score-sample" | "cot-score-logit" | "cot-score-sample";

export const JUDGE_MODES: readonly JudgeMode[] = [
  "score-logit",
  "yes-no",
  "score-sample",
  "cot-score-logit",
  "cot-score-sample",
];

export interface JudgeTemplate {
  /** Stable name; part of the cache key together with the rendered text. */
  id: string;
  mode: JudgeMode;
  /** Prompt text with `{instruction}` and `{requirement}` placeholders. */
  text: string;
}

const INTRO =
  "You will see two images. The first is the original image. The second is the same image after an " +
  "editing model tried to carry out the instruction below.\n\n" +
  "Instruction: {instruction}\n" +
  "Requirement for this edit: {requirement}\n\n";

const RUBRIC =
  "Judge how accurately the instruction was carried out, whether the requirement is met, and the visual " +
  "quality of the edited image, on a scale from 0 to 5:\n" +
  "- 0: the wrong object or region was edited, or the requirement is not met at all.\n" +
  "- 1 to 4: partly successful; higher scores mean more of the instruction and the requirement is " +
  "satisfied, with fewer visible flaws.\n" +
  "- 5: the right object or region was edited, the requirement is fully met, and the result looks " +
  "natural, with high visual quality.\n\n";

/** The marker the CoT templates ask for before the final digit. */
export const COT_SCORE_MARKER = "Score";

export const SCORE_LOGIT_TEMPLATE: JudgeTemplate = {
  id: "edit-r1/score-logit@1",
  mode: "score-logit",
  text: INTRO + RUBRIC + "Answer with the score digit (0, 1, 2, 3, 4 or 5) only, and nothing else.",
};

export const YES_NO_TEMPLATE: JudgeTemplate = {
  id: "edit-r1/yes-no@1",
  mode: "yes-no",
  text:
    INTRO +
    "Was the instruction carried out on the right object or region, with the requirement met and good " +
    "visual quality? Answer with Yes or No only, and nothing else.",
};

export const SCORE_SAMPLE_TEMPLATE: JudgeTemplate = {
  id: "edit-r1/score-sample@1",
  mode: "score-sample",
  text: SCORE_LOGIT_TEMPLATE.text,
};

const COT_TEXT =
  INTRO +
  RUBRIC +
  "First explain your judgement briefly. Then end your answer with a last line of the form " +
  `"${COT_SCORE_MARKER}: N", where N is the score digit.`;

export const COT_SCORE_LOGIT_TEMPLATE: JudgeTemplate = {
  id: "edit-r1/cot-score-logit@1",
  mode: "cot-score-logit",
  text: COT_TEXT,
};

export const COT_SCORE_SAMPLE_TEMPLATE: JudgeTemplate = {
  id: "edit-r1/cot-score-sample@1",
  mode: "cot-score-sample",
  text: COT_TEXT,
};

/** The built-in template of each mode. */
export function defaultTemplate(mode: JudgeMode): JudgeTemplate {
  switch (mode) {
    case "score-logit":
      return SCORE_LOGIT_TEMPLATE;
    case "yes-no":
      return YES_NO_TEMPLATE;
    case "score-sample":
      return SCORE_SAMPLE_TEMPLATE;
    case "cot-score-logit":
      return COT_SCORE_LOGIT_TEMPLATE;
    case "cot-score-sample":
      return COT_SCORE_SAMPLE_TEMPLATE;
    default:
      mode satisfies never;
      throw new JudgeConfigError(
        `judge mode "${String(mode)}" is unknown; use one of ${JUDGE_MODES.join(", ")}`,
      );
  }
}

/** Checks a template at configuration time so a typo fails before the first request. */
export function checkTemplate(template: JudgeTemplate): void {
  if (!JUDGE_MODES.includes(template.mode)) {
    throw new JudgeConfigError(
      `template "${template.id}" has unknown mode "${template.mode}"; use one of ${JUDGE_MODES.join(", ")}`,
    );
  }
  if (!template.id) throw new JudgeConfigError("judge template has an empty id; give it a stable name");
  if (!template.text.includes("{instruction}")) {
    throw new JudgeConfigError(
      `template "${template.id}" has no {instruction} placeholder; the judge would never see the instruction`,
    );
  }
}

/**
 * Fills `{instruction}` and `{requirement}` in one pass, so braces inside the instruction are left
 * alone. A missing requirement reads "None", as Edit-R1's own client sends.
 */
export function renderTemplate(
  template: JudgeTemplate,
  fields: { instruction: string; requirement?: string },
): string {
  const requirement = fields.requirement?.trim() ? fields.requirement : "None";
  return template.text.replace(/\{(instruction|requirement)\}/g, (_, name: string) =>
    name === "instruction" ? fields.instruction : requirement,
  );
}
