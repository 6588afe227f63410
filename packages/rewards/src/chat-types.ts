/**
 * The subset of the OpenAI chat-completions wire format that the judge client sends and the judge
 * server accepts and returns. vLLM and SGLang serve the same shapes (vLLM adds fields such as
 * `stop_reason`, and writes −9999.0 for logprobs of −∞); unknown fields are ignored on read.
 */

export interface ChatTextPart {
  type: "text";
  text: string;
}

export interface ChatImagePart {
  type: "image_url";
  image_url: { url: string; detail?: "auto" | "low" | "high" };
}

export type ChatContentPart = ChatTextPart | ChatImagePart;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string | ChatContentPart[];
}

export interface ChatCompletionRequest {
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  /** Newer OpenAI name for max_tokens; accepted by the server, not sent by the client. */
  max_completion_tokens?: number;
  temperature?: number;
  seed?: number;
  logprobs?: boolean;
  /** 0–20 alternatives per generated token; requires logprobs: true. */
  top_logprobs?: number;
  n?: number;
  stream?: boolean;
}

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes?: number[] | null;
}

export interface ChatLogprobContent extends ChatLogprob {
  top_logprobs: ChatLogprob[];
}

export interface ChatCompletionChoice {
  index: number;
  message: { role: "assistant"; content: string | null };
  logprobs: { content: ChatLogprobContent[] | null } | null;
  finish_reason: "stop" | "length" | string | null;
}

export interface ChatCompletionResponse {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** OpenAI's error body; vLLM ≥ 0.10 uses it too (older vLLM put the fields at the top level). */
export interface ChatErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number | null };
}
