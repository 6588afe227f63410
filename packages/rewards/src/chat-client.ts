/**
 * A client for OpenAI-compatible chat completions (vLLM, SGLang, OpenAI, our judge server) built for
 * reward scoring: bounded concurrency, a timeout per attempt, retries with exponential backoff and
 * jitter on what can succeed when asked again (timeouts, connection errors, unreadable bodies, 408, 429,
 * 5xx; never another 4xx, the client's own mistake), a line per retry through `log`, and a total deadline
 * per call, then a JudgeRequestError. The API key goes only into the Authorization header; it is never part
 * of an error, a log line or a stat.
 */
import type { ChatCompletionRequest } from "./chat-types.js";
import { JudgeConfigError, JudgeRequestError } from "./errors.js";
import { type LatencySummary, summariseLatencies } from "./latency-stats.js";
import { Limiter, sleep } from "./limiter.js";

export interface ChatClientOptions {
  /** Base URL ending in /v1, e.g. http://127.0.0.1:8000/v1. */
  baseUrl: string;
  apiKey?: string;
  /** Requests in flight at once. Default 16. */
  concurrency?: number;
  /** Per attempt, headers and body included. Default 60 000 ms (a loaded vLLM answers a judge prompt in seconds). */
  timeoutMs?: number;
  /**
   * Per call, from its first attempt to the answer, retries and backoff included; then the call fails, naming
   * the judge and the last problem. Default 300 000 ms.
   */
  deadlineMs?: number;
  /** Retries after the first attempt. Default 5. */
  maxRetries?: number;
  /** First backoff; doubles per retry, jittered to [d/2, d]. Default 500 ms. */
  retryBaseMs?: number;
  /** Backoff ceiling, also for Retry-After. Default 20 000 ms. */
  retryMaxMs?: number;
  /** Random source for the jitter, in [0, 1). Default Math.random. */
  random?: () => number;
  /**
   * Receives one line per retry, e.g. `judge: no answer from http://h:8000/v1 after 60 s, retry 2/5`, so a slow
   * or dead judge is visible while it happens. The same line repeated by concurrent requests is written once.
   * Default: standard error.
   */
  log?: (line: string) => void;
}

/** Seconds for people: "0.2 s", "1.5 s", "60 s". */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${s >= 10 ? Math.round(s) : Number(s.toPrecision(2))} s`;
}

export interface ChatClientStats {
  /** Calls of complete(). */
  calls: number;
  succeeded: number;
  failed: number;
  /** HTTP attempts, retries included. */
  attempts: number;
  retries: number;
  timeouts: number;
  connectionErrors: number;
  /** Non-2xx responses by status code. */
  httpErrors: Record<string, number>;
  malformedBodies: number;
  /** Per successful call, from the first attempt's start (queueing excluded) to the answer, backoff included. */
  latencyMs: LatencySummary;
  /** Per HTTP attempt that got a response. */
  attemptLatencyMs: LatencySummary;
}

export interface ChatCompletionResult {
  /** The parsed JSON body (validated by the caller for its mode). */
  body: unknown;
  latencyMs: number;
  attempts: number;
}

export interface ChatClient {
  readonly baseUrl: string;
  complete(request: ChatCompletionRequest, options?: { signal?: AbortSignal }): Promise<ChatCompletionResult>;
  /** Model ids from GET /models. */
  listModels(options?: { signal?: AbortSignal }): Promise<string[]>;
  stats(options?: { reset?: boolean }): ChatClientStats;
}

interface AttemptFailure {
  message: string;
  /** What the retry line says happened, e.g. "no answer from URL after 60 s". */
  short: string;
  retryable: boolean;
  status?: number;
  retryAfterMs?: number;
  cause?: unknown;
}

/** 4xx that can succeed when sent again: the server timed the request out, or was busy. */
const RETRYABLE_STATUS = new Set([408, 429]);

/** The server's own words from an OpenAI ({error:{message}}) or older vLLM ({message}) error body. */
function errorMessageOf(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof body.error === "object" && typeof body.error?.message === "string") return body.error.message;
    if (typeof body.error === "string") return body.error;
    if (typeof body.message === "string") return body.message;
  } catch {
    // not JSON: fall through to the raw text
  }
  const t = text.trim();
  return t.length > 200 ? `${t.slice(0, 200)}…` : t || "(empty body)";
}

function retryAfterMs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const s = Number(header);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

export function normaliseBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new JudgeConfigError(
      `judge URL "${baseUrl}" is not a URL; give the API base, e.g. http://127.0.0.1:8000/v1`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new JudgeConfigError(`judge URL "${baseUrl}" must be http or https`);
  }
  if (url.username || url.password) {
    throw new JudgeConfigError(
      "judge URL must not carry credentials; pass the key as apiKey or EDIT_R1_JUDGE_API_KEY",
    );
  }
  return url.toString().replace(/\/+$/, "");
}

export function createChatClient(options: ChatClientOptions): ChatClient {
  const baseUrl = normaliseBaseUrl(options.baseUrl);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadlineMs = options.deadlineMs ?? 300_000;
  const maxRetries = options.maxRetries ?? 5;
  const retryBaseMs = options.retryBaseMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 20_000;
  const random = options.random ?? Math.random;
  for (const [name, v] of Object.entries({ timeoutMs, deadlineMs, maxRetries, retryBaseMs, retryMaxMs })) {
    if (!Number.isFinite(v) || v < 0)
      throw new JudgeConfigError(`chat client ${name} ${v} must be a number ≥ 0`);
  }
  for (const [name, v] of Object.entries({ timeoutMs, deadlineMs })) {
    if (v === 0) throw new JudgeConfigError(`chat client ${name} must be more than 0`);
  }
  const write = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let lastLine = "";
  let lastLineAt = Number.NEGATIVE_INFINITY;
  /** Concurrent requests hitting one dead judge would print the same line each; print it once. */
  const log = (line: string) => {
    const now = performance.now();
    if (line === lastLine && now - lastLineAt < 10_000) return;
    lastLine = line;
    lastLineAt = now;
    try {
      write(line);
    } catch {
      // a broken log must not fail the request
    }
  };
  let limiter: Limiter;
  try {
    limiter = new Limiter(options.concurrency ?? 16);
  } catch (err) {
    throw new JudgeConfigError(`chat client ${(err as Error).message}`);
  }
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;

  const fresh = () => ({
    calls: 0,
    succeeded: 0,
    failed: 0,
    attempts: 0,
    retries: 0,
    timeouts: 0,
    connectionErrors: 0,
    httpErrors: {} as Record<string, number>,
    malformedBodies: 0,
    latencies: [] as number[],
    attemptLatencies: [] as number[],
  });
  let counters = fresh();

  /** One HTTP exchange; returns the parsed body or a classified failure. */
  async function attempt(
    method: "GET" | "POST",
    path: string,
    payload: string | undefined,
    signal: AbortSignal | undefined,
    limitMs: number,
  ): Promise<{ ok: true; body: unknown } | { ok: false; failure: AttemptFailure }> {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new Error(`no complete answer within ${limitMs} ms`)),
      limitMs,
    );
    const combined = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    const started = performance.now();
    counters.attempts++;
    try {
      const res = await fetch(`${baseUrl}${path}`, { method, headers, body: payload, signal: combined });
      const text = await res.text();
      counters.attemptLatencies.push(performance.now() - started);
      if (!res.ok) {
        counters.httpErrors[res.status] = (counters.httpErrors[res.status] ?? 0) + 1;
        const hint =
          res.status === 404 ? " (is the URL the API base ending in /v1, and the model name right?)" : "";
        return {
          ok: false,
          failure: {
            message: `HTTP ${res.status} from ${method} ${baseUrl}${path}: ${errorMessageOf(text)}${hint}`,
            short: `HTTP ${res.status} from ${baseUrl}`,
            retryable: RETRYABLE_STATUS.has(res.status) || res.status >= 500,
            status: res.status,
            retryAfterMs: retryAfterMs(res.headers.get("retry-after")),
          },
        };
      }
      try {
        return { ok: true, body: JSON.parse(text) };
      } catch (cause) {
        counters.malformedBodies++;
        const shown = text.length > 80 ? `${text.slice(0, 80)}…` : text;
        return {
          ok: false,
          failure: {
            message: `unreadable JSON from ${method} ${baseUrl}${path} (HTTP ${res.status}): ${JSON.stringify(shown)}`,
            short: `unreadable answer from ${baseUrl}`,
            retryable: true,
            status: res.status,
            cause,
          },
        };
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.signal.aborted) {
        counters.timeouts++;
        return {
          ok: false,
          failure: {
            message: `timed out after ${limitMs} ms on ${method} ${baseUrl}${path}`,
            short: `no answer from ${baseUrl} after ${formatSeconds(limitMs)}`,
            retryable: true,
            cause: err,
          },
        };
      }
      counters.connectionErrors++;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message ?? (err as Error).message;
      return {
        ok: false,
        failure: {
          message: `connection to ${baseUrl}${path} failed (${detail}); is the judge server running?`,
          short: `connection to ${baseUrl} failed (${detail})`,
          retryable: true,
          cause: err,
        },
      };
    } finally {
      clearTimeout(timer);
    }
  }

  async function withRetries(
    method: "GET" | "POST",
    path: string,
    payload: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ChatCompletionResult> {
    counters.calls++;
    // Latency starts when the first attempt gets a slot: time queued behind our own limiter is not the judge's.
    let started: number | undefined;
    let last: AttemptFailure | undefined;
    const pastDeadline = (n: number): JudgeRequestError => {
      counters.failed++;
      return new JudgeRequestError(
        `judge at ${baseUrl} gave no usable answer within the ${formatSeconds(deadlineMs)} deadline ` +
          `(${n} attempt${n === 1 ? "" : "s"}; last: ${last?.message ?? "none"}); check that the judge server ` +
          "is up and answering, or raise timeout= / deadline= (seconds) in the reward spec",
        { status: last?.status, attempts: n, retryable: true, cause: last?.cause },
      );
    };
    for (let n = 1; n <= maxRetries + 1; n++) {
      const release = await limiter.acquire(signal).catch((reason) => {
        counters.failed++;
        throw reason;
      });
      started ??= performance.now();
      const left = started + deadlineMs - performance.now();
      if (left <= 0) {
        release();
        throw pastDeadline(n - 1);
      }
      let result: Awaited<ReturnType<typeof attempt>>;
      try {
        result = await attempt(method, path, payload, signal, Math.min(timeoutMs, Math.ceil(left)));
      } catch (reason) {
        counters.failed++;
        throw reason;
      } finally {
        release();
      }
      if (result.ok) {
        const latencyMs = performance.now() - (started ?? 0);
        counters.succeeded++;
        counters.latencies.push(latencyMs);
        return { body: result.body, latencyMs, attempts: n };
      }
      last = result.failure;
      if (!last.retryable || n === maxRetries + 1) {
        counters.failed++;
        const tail = last.retryable ? ` (gave up after ${n} attempts)` : " (not retried)";
        throw new JudgeRequestError(last.message + tail, {
          status: last.status,
          attempts: n,
          retryable: last.retryable,
          cause: last.cause,
        });
      }
      const ceiling = Math.min(retryMaxMs, retryBaseMs * 2 ** (n - 1));
      const backoff = ceiling / 2 + (random() * ceiling) / 2;
      const wait =
        last.retryAfterMs !== undefined
          ? Math.min(retryMaxMs, Math.max(backoff, last.retryAfterMs))
          : backoff;
      if (performance.now() + wait >= started + deadlineMs) throw pastDeadline(n);
      counters.retries++;
      log(`judge: ${last.short}, retry ${n}/${maxRetries}`);
      await sleep(wait, signal).catch((reason) => {
        counters.failed++;
        throw reason;
      });
    }
    // Unreachable: the loop either returns or throws on its last iteration.
    throw new JudgeRequestError(last?.message ?? "no attempt made", { attempts: 0, retryable: false });
  }

  return {
    baseUrl,
    complete(request, opts) {
      return withRetries("POST", "/chat/completions", JSON.stringify(request), opts?.signal);
    },
    async listModels(opts) {
      const { body } = await withRetries("GET", "/models", undefined, opts?.signal);
      const data = (body as { data?: unknown }).data;
      if (!Array.isArray(data)) {
        throw new JudgeRequestError(`GET ${baseUrl}/models did not return {data: [...]}`, {
          attempts: 1,
          retryable: false,
        });
      }
      return data.map((m) => String((m as { id?: unknown }).id));
    },
    stats(opts) {
      const c = counters;
      if (opts?.reset) counters = fresh();
      return {
        calls: c.calls,
        succeeded: c.succeeded,
        failed: c.failed,
        attempts: c.attempts,
        retries: c.retries,
        timeouts: c.timeouts,
        connectionErrors: c.connectionErrors,
        httpErrors: { ...c.httpErrors },
        malformedBodies: c.malformedBodies,
        latencyMs: summariseLatencies(c.latencies),
        attemptLatencyMs: summariseLatencies(c.attemptLatencies),
      };
    },
  };
}
