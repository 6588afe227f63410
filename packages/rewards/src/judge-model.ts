/**
 * The plug-in interface of the judge server: a local judge "model" receives the decoded images and the
 * prompt text of one chat request and returns a distribution over the score tokens (or text). The server
 * does the HTTP, the OpenAI wire format and the logprob bookkeeping, so a new judge is a few lines:
 *
 *   const shapes: JudgeModel = {
 *     id: "shapes",
 *     judge: ({ images: [source, edited], text }) =>
 *       ({ distribution: judgeDistribution(source, edited, parseJudgePrompt(text).instruction) }),
 *   };
 */
import type { RgbImage } from "@edit-r1/core";
import type { ChatMessage } from "./chat-types.js";
import type { TokenLogprob } from "./score.js";

export interface JudgeModelRequest {
  /** The model id the client asked for. */
  model: string;
  /** Every image of the conversation in order; for the Edit-R1 templates: original, then edited. */
  images: RgbImage[];
  /** The text parts of the user messages, joined with "\n". */
  text: string;
  /** The messages as sent, images still as data URLs, for judges that need roles or the system prompt. */
  messages: ChatMessage[];
  maxTokens: number;
  temperature: number;
  seed: number | undefined;
  logprobs: boolean;
  /** Alternatives wanted per token (0 when logprobs are off). */
  topLogprobs: number;
  /** Aborts when the client disconnects or the server closes. */
  signal: AbortSignal;
}

/** A judge's answer. */
export interface JudgeAnswer {
  /** Generated text. Defaults to the likeliest token of `distribution`. */
  text?: string;
  /**
   * Probabilities of candidate tokens at the last generated token (the score digit in every built-in
   * template). An array means the tokens "0", "1", …; an object maps tokens to probabilities. They need
   * not sum to 1: they are renormalised, as if these were the only tokens with mass.
   */
  distribution?: readonly number[] | Readonly<Record<string, number>>;
  /**
   * A real model's answer instead: the log-probabilities of its likeliest tokens at the generated token, over
   * the whole vocabulary, written as given (not renormalised) in that order, as many as the request's
   * `top_logprobs` asks for. `text` is then exactly that one token (default: the first of these) and must be
   * among them. Takes precedence over `distribution`.
   */
  logprobs?: readonly TokenLogprob[];
  /** Why generation ended. Default "stop", or "length" when max_tokens cut the text. */
  finishReason?: "stop" | "length";
  /** The prompt's length in tokens, for `usage`; estimated when absent. */
  promptTokens?: number;
  /** Wait this long before answering (tests of slow judges). */
  delayMs?: number;
}

/**
 * Failures a scripted judge can ask the server to stage, for fault-injection tests:
 * - `status`: reply with this HTTP status and an OpenAI error body;
 * - `hang`: never answer (until the client gives up or the server closes);
 * - `malformed-json`: HTTP 200 with a truncated JSON body;
 * - `drop-connection`: send the status line and half a body, then destroy the socket;
 * - `no-logprobs`: a normal completion of `text` with `logprobs: null`.
 */
export type JudgeFault =
  | { fault: "status"; status: number; message?: string; retryAfterS?: number }
  | { fault: "hang" }
  | { fault: "malformed-json" }
  | { fault: "drop-connection" }
  | { fault: "no-logprobs"; text?: string };

export type JudgeModelReply = JudgeAnswer | JudgeFault;

export interface JudgeModel {
  /** The id clients put in `model` and GET /v1/models lists. */
  readonly id: string;
  judge(request: JudgeModelRequest): Promise<JudgeModelReply> | JudgeModelReply;
  close?(): Promise<void> | void;
}

/**
 * The instruction and requirement of a prompt rendered from a built-in template ("Instruction: …" and
 * "Requirement for this edit: …" lines), so a local judge can read them back from the request text.
 * Undefined fields mean the line is absent (a custom template); "None" is returned as undefined.
 */
export function parseJudgePrompt(text: string): { instruction?: string; requirement?: string } {
  const instruction = /^Instruction: (.*)$/m.exec(text)?.[1];
  const requirement = /^Requirement for this edit: (.*)$/m.exec(text)?.[1];
  return { instruction, requirement: requirement === "None" ? undefined : requirement };
}
