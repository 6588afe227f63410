/**
 * The benchmark judge connection: an OpenAI-compatible chat client (retries on 408/409/429/5xx,
 * timeouts and connection errors, bounded concurrency) plus the settings to record with the results.
 * Benchmark judges answer in free text, so this uses the chat client directly rather than the
 * logprob-scored training reward.
 */
import { type ChatClient, createChatClient } from "./chat-client.js";
import type { ChatContentPart } from "./chat-types.js";
import { JudgeConfigError, JudgeResponseError } from "./errors.js";
import { describeJudgeSettings, type Env, resolveJudgeSettings } from "./judge-settings.js";
import { parseRewardSpec } from "./reward-spec.js";

export interface BenchJudgeOptions {
  /** API base ending in /v1. Default EDIT_R1_JUDGE_URL. */
  url?: string;
  /** Default EDIT_R1_JUDGE_MODEL, else the only model the server lists. */
  model?: string;
  /** Default EDIT_R1_JUDGE_API_KEY. Never recorded. */
  apiKey?: string;
  /** Where EDIT_R1_JUDGE_* are read from (default process.env). */
  env?: Env;
  /** Judge requests in flight at once. Default 16. */
  concurrency?: number;
  /** Per attempt. Default 120 000 ms. */
  timeoutMs?: number;
  /** HTTP retries after the first attempt. Default 5. */
  maxRetries?: number;
  /** First backoff between HTTP retries. Default 500 ms. */
  retryBaseMs?: number;
  /** Sampling temperature; undefined sends none, so the API default applies as in the official scripts. */
  temperature?: number;
  /** Completion token limit; undefined sends none unless the benchmark has an official value. */
  maxTokens?: number;
  /** Sent when set (the official scripts send none). */
  seed?: number;
  /** Extra judge calls when a reply cannot be parsed (the judge samples, so asking again can help). Default 1. */
  parseRetries?: number;
}

export interface BenchJudge {
  client: ChatClient;
  model: string;
  /** What the results record: no key, only whether one was set. */
  settings: Record<string, unknown>;
  parseRetries: number;
  /** The request fields besides model and messages. */
  requestFields: { temperature?: number; max_tokens?: number; seed?: number };
}

export async function connectBenchJudge(
  options: BenchJudgeOptions,
  defaults: { maxTokens?: number } = {},
): Promise<BenchJudge> {
  const resolved = resolveJudgeSettings(
    { url: options.url, model: options.model, apiKey: options.apiKey },
    options.env ?? process.env,
  );
  const client = createChatClient({
    baseUrl: resolved.url,
    apiKey: resolved.apiKey,
    concurrency: options.concurrency,
    timeoutMs: options.timeoutMs,
    maxRetries: options.maxRetries,
    retryBaseMs: options.retryBaseMs,
  });
  let model = resolved.model;
  if (model === undefined) {
    const served = await client.listModels();
    if (served.length !== 1) {
      throw new JudgeConfigError(
        `the judge at ${resolved.url} serves ${served.length} models (${served.slice(0, 5).join(", ") || "none"}); name one with model=… (published numbers use gpt-4.1)`,
      );
    }
    model = served[0]!;
  }
  const parseRetries = options.parseRetries ?? 1;
  if (!Number.isInteger(parseRetries) || parseRetries < 0) {
    throw new JudgeConfigError(`judge parseRetries ${parseRetries} must be an integer ≥ 0`);
  }
  const maxTokens = options.maxTokens ?? defaults.maxTokens;
  const requestFields = {
    ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
    ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
  };
  return {
    client,
    model,
    parseRetries,
    requestFields,
    settings: {
      ...describeJudgeSettings({ ...resolved, model }),
      temperature: options.temperature ?? "API default",
      maxTokens: maxTokens ?? "API default",
      seed: options.seed ?? null,
      concurrency: options.concurrency ?? 16,
      maxRetries: options.maxRetries ?? 5,
      parseRetries,
    },
  };
}

const SPEC_OPTIONS = [
  "model",
  "apiKeyEnv",
  "concurrency",
  "timeoutMs",
  "retries",
  "temperature",
  "maxTokens",
  "seed",
  "parseRetries",
];

/**
 * Judge options from a CLI `--judge` spec: `mllm[:<url>][?model=…&concurrency=…&…]`, as for rewards.
 * Keys never go into specs; `apiKeyEnv=NAME` names the variable holding one.
 */
export function benchJudgeOptionsFromSpec(spec: string, env: Env = process.env): BenchJudgeOptions {
  const parts = parseRewardSpec(spec);
  const part = parts[0]!;
  if (parts.length !== 1 || part.kind !== "mllm" || part.weight !== 1) {
    throw new JudgeConfigError(
      `judge spec "${spec}" must be one mllm part, e.g. mllm:http://127.0.0.1:8000/v1?model=gpt-4.1; benchmarks use one judge`,
    );
  }
  const numberOf = (name: string): number | undefined => {
    const raw = part.options[name];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) {
      throw new JudgeConfigError(`judge spec option ${name}=${raw} is not a number`);
    }
    return n;
  };
  for (const key of Object.keys(part.options)) {
    if (!SPEC_OPTIONS.includes(key)) {
      throw new JudgeConfigError(`judge spec option "${key}" is unknown; known: ${SPEC_OPTIONS.join(", ")}`);
    }
  }
  let apiKey: string | undefined;
  const keyEnv = part.options.apiKeyEnv;
  if (keyEnv !== undefined) {
    apiKey = env[keyEnv];
    if (!apiKey)
      throw new JudgeConfigError(`judge spec apiKeyEnv=${keyEnv} names an unset environment variable`);
  }
  return {
    url: part.target,
    model: part.options.model,
    apiKey,
    env,
    concurrency: numberOf("concurrency"),
    timeoutMs: numberOf("timeoutMs"),
    maxRetries: numberOf("retries"),
    temperature: numberOf("temperature"),
    maxTokens: numberOf("maxTokens"),
    seed: numberOf("seed"),
    parseRetries: numberOf("parseRetries"),
  };
}

/** The assistant text of a chat completion body; a JudgeResponseError when there is none. */
export function completionText(body: unknown): string {
  const choice = (body as { choices?: Array<{ message?: { content?: unknown } }> }).choices?.[0];
  const content = choice?.message?.content;
  if (typeof content !== "string") {
    throw new JudgeResponseError(
      "the judge's completion has no text in choices[0].message.content (a refusal or a filtered reply?)",
      body,
    );
  }
  return content;
}

/** A judge call's outcome: the parsed reply, or why there is none (never a throw for judge problems). */
export type BenchJudgeAnswer<T> =
  | { value: T }
  | {
      /** `judge-request`: the call failed; `judge-reply`: it answered, but with nothing usable. */
      kind: "judge-request" | "judge-reply";
      error: string;
      /** The replies came but none parsed (`error` is then the last parse error). */
      unparsed: boolean;
    };

/**
 * One user message to the judge, re-asked up to `parseRetries` times when `parse` throws an error
 * `isParseError` accepts (the judge samples, so asking again can help); other throws propagate, since
 * they are bugs. Every raw reply is appended to `replies`, so the record keeps what the judge said.
 */
export async function askBenchJudge<T>(
  judge: BenchJudge,
  content: ChatContentPart[],
  parse: (text: string) => T,
  isParseError: (err: unknown) => boolean,
  replies: string[],
): Promise<BenchJudgeAnswer<T>> {
  for (let attempt = 0; ; attempt++) {
    let text: string;
    try {
      const { body } = await judge.client.complete({
        model: judge.model,
        messages: [{ role: "user", content }],
        ...judge.requestFields,
      });
      text = completionText(body);
    } catch (err) {
      return {
        kind: err instanceof JudgeResponseError ? "judge-reply" : "judge-request",
        error: (err as Error).message,
        unparsed: false,
      };
    }
    replies.push(text);
    try {
      return { value: parse(text) };
    } catch (err) {
      if (!isParseError(err)) throw err;
      if (attempt >= judge.parseRetries) {
        return { kind: "judge-reply", error: (err as Error).message, unparsed: true };
      }
    }
  }
}
