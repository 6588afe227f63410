/**
 * Turns an OpenAI-compatible chat completion into a judge verdict, per judge mode. Anything that does
 * not yield a score raises JudgeResponseError: a missing score is never replaced by a guess.
 */
import type { ChatLogprob, ChatLogprobContent } from "./chat-types.js";
import { JudgeResponseError } from "./errors.js";
import {
  expectedScore,
  parseScoreText,
  scoreDistribution,
  type TokenLogprob,
  yesProbability,
} from "./score.js";
import { COT_SCORE_MARKER, type JudgeMode } from "./templates.js";

/** The highest score on the rubric; scores are divided by it to land in [0, 1]. */
export const MAX_SCORE = 5;

export interface JudgeVerdict {
  /** In [0, 1]. */
  score: number;
  /** The generated text. */
  text: string;
  /** p_0…p_5 renormalised among the score tokens (logit modes). */
  distribution?: number[];
  /** P(Yes) among Yes/No (yes-no mode). */
  yes?: number;
  /** The candidates of the token that was scored (logit modes), as the judge returned them. */
  candidates?: TokenLogprob[];
}

export interface ParsedCompletion {
  text: string;
  logprobs: ChatLogprobContent[] | null;
  finishReason: string | null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function readLogprob(v: unknown, where: string, body: unknown): ChatLogprob {
  if (!isRecord(v) || typeof v.token !== "string" || typeof v.logprob !== "number") {
    throw new JudgeResponseError(`judge response ${where} is not {token: string, logprob: number}`, body);
  }
  return { token: v.token, logprob: v.logprob };
}

/** Validates the parts of a chat completion the judge needs: choices[0].message.content and .logprobs.content. */
export function parseChatCompletion(body: unknown): ParsedCompletion {
  if (!isRecord(body) || !Array.isArray(body.choices) || body.choices.length === 0) {
    throw new JudgeResponseError(
      "judge response has no choices[]; the server did not return an OpenAI chat completion (is the URL the /v1 base?)",
      body,
    );
  }
  const choice = body.choices[0];
  if (!isRecord(choice) || !isRecord(choice.message)) {
    throw new JudgeResponseError("judge response choices[0] has no message object", body);
  }
  const content = choice.message.content;
  if (content !== null && content !== undefined && typeof content !== "string") {
    throw new JudgeResponseError("judge response choices[0].message.content is not a string", body);
  }
  let logprobs: ChatLogprobContent[] | null = null;
  if (isRecord(choice.logprobs) && Array.isArray(choice.logprobs.content)) {
    logprobs = choice.logprobs.content.map((entry: unknown, i: number) => {
      const at = `choices[0].logprobs.content[${i}]`;
      const self = readLogprob(entry, at, body);
      const top = (entry as Record<string, unknown>).top_logprobs;
      if (top !== undefined && top !== null && !Array.isArray(top)) {
        throw new JudgeResponseError(`judge response ${at}.top_logprobs is not an array`, body);
      }
      const topList = (top ?? []) as unknown[];
      return {
        ...self,
        top_logprobs: topList.map((t, j) => readLogprob(t, `${at}.top_logprobs[${j}]`, body)),
      };
    });
  }
  const finish = choice.finish_reason;
  return { text: content ?? "", logprobs, finishReason: typeof finish === "string" ? finish : null };
}

function candidatesOf(entry: ChatLogprobContent): TokenLogprob[] {
  const out: TokenLogprob[] = entry.top_logprobs.map(({ token, logprob }) => ({ token, logprob }));
  // The chosen token is not always among top_logprobs when it was sampled; it is still a candidate.
  if (!out.some((c) => c.token === entry.token)) out.push({ token: entry.token, logprob: entry.logprob });
  return out;
}

function describeCandidates(c: readonly TokenLogprob[]): string {
  return c
    .slice()
    .sort((a, b) => b.logprob - a.logprob)
    .slice(0, 5)
    .map((t) => `${JSON.stringify(t.token)} (${t.logprob.toFixed(2)})`)
    .join(", ");
}

function requireLogprobs(parsed: ParsedCompletion, body: unknown): ChatLogprobContent[] {
  if (parsed.logprobs === null || parsed.logprobs.length === 0) {
    throw new JudgeResponseError(
      "judge response has no choices[0].logprobs.content although logprobs were requested; use a server and model " +
        "that return logprobs (vLLM and SGLang do; vLLM caps top_logprobs at --max-logprobs, default 20)",
      body,
    );
  }
  return parsed.logprobs;
}

function digitVerdict(entry: ChatLogprobContent, text: string, what: string, body: unknown): JudgeVerdict {
  const candidates = candidatesOf(entry);
  const distribution = scoreDistribution(candidates, MAX_SCORE);
  const score = expectedScore(candidates, MAX_SCORE);
  if (distribution === undefined || score === undefined) {
    throw new JudgeResponseError(
      `none of the score tokens 0–${MAX_SCORE} is among the ${candidates.length} candidates of ${what} ` +
        `(likeliest: ${describeCandidates(candidates)}); the judge did not answer with a digit. Check the template ` +
        "and the model's chat template, or raise top_logprobs",
      body,
    );
  }
  return { score, text, distribution, candidates };
}

/** The digit right after the last "Score:" marker, as a logprob entry; its top_logprobs are scored. */
function cotScoreEntry(content: ChatLogprobContent[], body: unknown): ChatLogprobContent {
  const joined = content.map((c) => c.token).join("");
  const re = new RegExp(`${COT_SCORE_MARKER}\\W{0,6}?(\\d)`, "gi");
  let digitAt = -1;
  for (const m of joined.matchAll(re)) digitAt = (m.index ?? 0) + m[0].length - 1;
  if (digitAt < 0) {
    throw new JudgeResponseError(
      `judge reasoning has no "${COT_SCORE_MARKER}: N" line; the CoT template asks for one. Raise max_tokens if the answer was cut off`,
      body,
    );
  }
  let offset = 0;
  for (const entry of content) {
    const end = offset + entry.token.length;
    if (digitAt < end) {
      if (!/^\s*\d\s*$/.test(entry.token)) {
        throw new JudgeResponseError(
          `the score digit after "${COT_SCORE_MARKER}:" is inside the token ${JSON.stringify(entry.token)}, so its ` +
            "logprobs cannot be read; use cot-score-sample with this model",
          body,
        );
      }
      return entry;
    }
    offset = end;
  }
  throw new JudgeResponseError("judge logprobs do not cover the generated text", body);
}

/** Reads a verdict from a chat-completion body for the given mode; throws JudgeResponseError otherwise. */
export function verdictFromCompletion(body: unknown, mode: JudgeMode): JudgeVerdict {
  const parsed = parseChatCompletion(body);
  const text = parsed.text;
  switch (mode) {
    case "score-logit": {
      const content = requireLogprobs(parsed, body);
      return digitVerdict(content[0], text, "the first generated token", body);
    }
    case "yes-no": {
      const content = requireLogprobs(parsed, body);
      const candidates = candidatesOf(content[0]);
      const yes = yesProbability(candidates);
      if (yes === undefined) {
        throw new JudgeResponseError(
          `neither "Yes" nor "No" is among the ${candidates.length} candidates of the first generated token ` +
            `(likeliest: ${describeCandidates(candidates)}); check the template or raise top_logprobs`,
          body,
        );
      }
      return { score: yes, text, yes, candidates };
    }
    case "score-sample":
    case "cot-score-sample": {
      const k = parseScoreText(text, MAX_SCORE, mode === "cot-score-sample" ? COT_SCORE_MARKER : undefined);
      if (k === undefined) {
        const shown = text.length > 120 ? `${text.slice(0, 60)}…${text.slice(-60)}` : text;
        throw new JudgeResponseError(
          `judge text ${JSON.stringify(shown)} holds no score 0–${MAX_SCORE}` +
            (mode === "cot-score-sample" ? ` after "${COT_SCORE_MARKER}:"` : "") +
            (parsed.finishReason === "length" ? "; the answer was cut off, raise max_tokens" : ""),
          body,
        );
      }
      return { score: k / MAX_SCORE, text };
    }
    case "cot-score-logit": {
      const content = requireLogprobs(parsed, body);
      return digitVerdict(cotScoreEntry(content, body), text, `the digit after "${COT_SCORE_MARKER}:"`, body);
    }
    default:
      mode satisfies never;
      throw new JudgeResponseError(`unknown judge mode "${String(mode)}"`);
  }
}
