/**
 * Where the judge is: options first, then EDIT_R1_JUDGE_URL / EDIT_R1_JUDGE_MODEL / EDIT_R1_JUDGE_API_KEY.
 * The key is kept out of everything meant for logs (describeJudgeSettings shows only whether it is set).
 */
import { normaliseBaseUrl } from "./chat-client.js";
import { JudgeConfigError } from "./errors.js";

export interface JudgeSettings {
  /** API base ending in /v1. */
  url: string;
  /** Undefined: ask GET /models and use the only model served. */
  model: string | undefined;
  apiKey: string | undefined;
}

export type Env = Readonly<Record<string, string | undefined>>;

export function resolveJudgeSettings(
  options: { url?: string; model?: string; apiKey?: string } = {},
  env: Env = process.env,
): JudgeSettings {
  const url = options.url ?? env.EDIT_R1_JUDGE_URL;
  if (!url) {
    throw new JudgeConfigError(
      "no judge URL: pass one (e.g. --reward mllm:http://127.0.0.1:8000/v1) or set EDIT_R1_JUDGE_URL; " +
        "for a local judge run `edit-r1 judge serve`",
    );
  }
  return {
    url: normaliseBaseUrl(url),
    model: options.model || env.EDIT_R1_JUDGE_MODEL || undefined,
    apiKey: options.apiKey || env.EDIT_R1_JUDGE_API_KEY || undefined,
  };
}

/** The settings as they may appear in logs and run reports: the key only as set / not set. */
export function describeJudgeSettings(settings: JudgeSettings): {
  url: string;
  model: string | null;
  apiKey: "set" | "not set";
} {
  return { url: settings.url, model: settings.model ?? null, apiKey: settings.apiKey ? "set" : "not set" };
}
