/**
 * An OpenAI-compatible judge server (POST /v1/chat/completions with logprobs, GET /v1/models) in front
 * of local judge models, so training talks to a local judge exactly as it talks to vLLM. It binds
 * loopback by default, can require a bearer key, limits request size, and answers bad requests with a
 * 4xx and an OpenAI error body.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { RgbImage } from "@edit-r1/core";
import { EditR1Error } from "@edit-r1/core";
import type {
  ChatCompletionRequest,
  ChatCompletionResponse,
  ChatErrorBody,
  ChatLogprobContent,
  ChatMessage,
} from "./chat-types.js";
import { JudgeConfigError, JudgeInputError } from "./errors.js";
import { decodeImageDataUrl, ImageDecodeError } from "./image-data-url.js";
import type { JudgeAnswer, JudgeModel, JudgeModelReply, JudgeModelRequest } from "./judge-model.js";

export interface JudgeServerOptions {
  /** Default 127.0.0.1. Anything else exposes the judge to the network; set apiKey then. */
  host?: string;
  /** Default 0: a free port (read it from `url`). */
  port?: number;
  /** When set, requests need `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  models: readonly JudgeModel[];
  /** Largest request body accepted. Default 64 MiB. */
  maxBodyBytes?: number;
  /** Most images in one request. Default 8. */
  maxImages?: number;
  /** Most pixels per decoded image. Default 4096². */
  maxPixels?: number;
}

export interface JudgeServer {
  /** API base, e.g. http://127.0.0.1:41234/v1. */
  url: string;
  /** Stops accepting, drops open connections (hanging requests included) and closes the models. */
  close(): Promise<void>;
}

/** OpenAI's maximum for top_logprobs; vLLM's default --max-logprobs is also 20. */
const MAX_TOP_LOGPROBS = 20;
/** What vLLM writes for a logprob of −∞ (JSON has no infinity). */
const NEG_INF_LOGPROB = -9999;

class HttpError extends EditR1Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: HttpError, headers: Record<string, string> = {}): void {
  const body: ChatErrorBody = {
    error: { message: err.message, type: err.type, param: err.param, code: err.code },
  };
  sendJson(res, err.status, body, headers);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      // Drain rather than reset, so the client reads the 413 instead of a connection error.
      req.resume();
      reject(
        new HttpError(
          413,
          `request body of ${declared} bytes exceeds the limit of ${limit} bytes; send smaller images`,
          "invalid_request_error",
          "request_too_large",
        ),
      );
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        reject(
          new HttpError(
            413,
            `request body exceeds the limit of ${limit} bytes; send smaller images`,
            "invalid_request_error",
            "request_too_large",
          ),
        );
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function bad(message: string, param: string | null = null): HttpError {
  return new HttpError(400, message, "invalid_request_error", null, param);
}

/** Checks the request against what the server supports; returns it typed. */
function validateRequest(raw: unknown): ChatCompletionRequest {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw bad("request body must be a JSON object");
  const r = raw as Record<string, unknown>;
  if (typeof r.model !== "string" || !r.model) throw bad("'model' is required and must be a string", "model");
  if (!Array.isArray(r.messages) || r.messages.length === 0) {
    throw bad("'messages' must be a non-empty array", "messages");
  }
  r.messages.forEach((m, i) => {
    const msg = m as Record<string, unknown>;
    if (
      typeof m !== "object" ||
      m === null ||
      !["system", "user", "assistant"].includes(msg.role as string)
    ) {
      throw bad(`messages[${i}].role must be system, user or assistant`, `messages[${i}].role`);
    }
    if (typeof msg.content === "string") return;
    if (!Array.isArray(msg.content))
      throw bad(`messages[${i}].content must be a string or an array of parts`, `messages[${i}].content`);
    msg.content.forEach((p, j) => {
      const part = p as Record<string, unknown>;
      const at = `messages[${i}].content[${j}]`;
      if (part?.type === "text" && typeof part.text === "string") return;
      if (part?.type === "image_url" && typeof (part.image_url as { url?: unknown })?.url === "string")
        return;
      throw bad(`${at} must be {type:"text",text} or {type:"image_url",image_url:{url}}`, at);
    });
  });
  if (r.stream === true)
    throw bad("stream: true is not supported by this judge server; send stream: false", "stream");
  if (r.n !== undefined && r.n !== null && r.n !== 1) throw bad("only n = 1 is supported", "n");
  if (r.logprobs !== undefined && r.logprobs !== null && typeof r.logprobs !== "boolean") {
    throw bad("'logprobs' must be a boolean", "logprobs");
  }
  if (r.top_logprobs !== undefined && r.top_logprobs !== null) {
    const k = r.top_logprobs;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 0 || k > MAX_TOP_LOGPROBS) {
      throw bad(`'top_logprobs' must be an integer from 0 to ${MAX_TOP_LOGPROBS}`, "top_logprobs");
    }
    if (r.logprobs !== true) throw bad("when using 'top_logprobs', 'logprobs' must be true", "top_logprobs");
  }
  for (const key of ["max_tokens", "max_completion_tokens"]) {
    const v = r[key];
    if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isInteger(v) || v < 1)) {
      throw bad(`'${key}' must be a positive integer`, key);
    }
  }
  if (
    r.temperature !== undefined &&
    r.temperature !== null &&
    (typeof r.temperature !== "number" || r.temperature < 0)
  ) {
    throw bad("'temperature' must be a number ≥ 0", "temperature");
  }
  return r as unknown as ChatCompletionRequest;
}

/** Splits text into token-like pieces; every digit is its own piece, as in Qwen's vocabulary. */
function tokenise(text: string): string[] {
  return text.match(/\d|\s*[^\s\d]+|\s+/g) ?? [];
}

function distributionEntries(d: JudgeAnswer["distribution"]): Array<[string, number]> {
  if (d === undefined) return [];
  const entries: Array<[string, number]> = Array.isArray(d)
    ? (d as readonly number[]).map((p, k) => [String(k), p])
    : Object.entries(d as Record<string, number>);
  for (const [token, p] of entries) {
    if (!Number.isFinite(p) || p < 0) {
      throw new HttpError(
        500,
        `judge model gave token ${JSON.stringify(token)} the probability ${p}; probabilities must be finite and ≥ 0`,
        "server_error",
      );
    }
  }
  const z = entries.reduce((s, [, p]) => s + p, 0);
  if (!(z > 0)) throw new HttpError(500, "judge model returned a distribution with no mass", "server_error");
  return entries.map(([t, p]) => [t, p / z]);
}

function logOf(p: number): number {
  return p > 0 ? Math.log(p) : NEG_INF_LOGPROB;
}

function bytesOf(token: string): number[] {
  return [...Buffer.from(token, "utf8")];
}

/**
 * The answer's candidates for its last token as (token, logprob), likeliest first: a real model's logprobs
 * as given, or a distribution's probabilities renormalised and logged (−9999 for zero mass).
 */
function rankedCandidates(answer: JudgeAnswer): Array<[string, number]> {
  if (answer.logprobs) {
    const ranked = answer.logprobs.map(({ token, logprob }): [string, number] => {
      if (typeof token !== "string" || typeof logprob !== "number" || Number.isNaN(logprob) || logprob > 0) {
        throw new HttpError(
          500,
          `judge model gave token ${JSON.stringify(token)} the logprob ${logprob}; logprobs must be numbers ≤ 0`,
          "server_error",
        );
      }
      return [token, Math.max(logprob, NEG_INF_LOGPROB)];
    });
    return ranked.sort((a, b) => b[1] - a[1]);
  }
  return distributionEntries(answer.distribution)
    .sort((a, b) => b[1] - a[1])
    .map(([t, p]) => [t, logOf(p)]);
}

/** Builds the completion body: text, per-token logprobs, and the candidates on the last token. */
function completionFor(
  request: ChatCompletionRequest,
  answer: JudgeAnswer,
  maxTokens: number,
  logprobs: boolean,
  topLogprobs: number,
  promptTokens: number,
): ChatCompletionResponse {
  const dist = rankedCandidates(answer);
  const text = answer.text ?? dist[0]?.[0];
  if (text === undefined) {
    throw new HttpError(
      500,
      `judge model "${request.model}" returned neither text nor a distribution`,
      "server_error",
    );
  }
  // A model's answer is one real token; a distribution judge's text is split into token-like pieces.
  const pieces = answer.logprobs ? [text] : tokenise(text);
  const kept = pieces.slice(0, maxTokens);
  if (dist.length > 0 && pieces.length > 0 && !dist.some(([t]) => t === pieces[pieces.length - 1])) {
    throw new HttpError(
      500,
      `judge model "${request.model}" answered ${JSON.stringify(text)} but its last token is not in its distribution`,
      "server_error",
    );
  }
  let content: ChatLogprobContent[] | null = null;
  if (logprobs) {
    content = kept.map((token, i) => {
      if (i === pieces.length - 1 && dist.length > 0) {
        const lp = dist.find(([t]) => t === token)?.[1] ?? NEG_INF_LOGPROB;
        return {
          token,
          logprob: lp,
          bytes: bytesOf(token),
          top_logprobs: dist
            .slice(0, topLogprobs)
            .map(([t, q]) => ({ token: t, logprob: q, bytes: bytesOf(t) })),
        };
      }
      // Tokens without a distribution were certain for this judge.
      return {
        token,
        logprob: 0,
        bytes: bytesOf(token),
        top_logprobs: topLogprobs > 0 ? [{ token, logprob: 0, bytes: bytesOf(token) }] : [],
      };
    });
  }
  return {
    id: `chatcmpl-${randomUUID().replace(/-/g, "")}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: kept.join("") },
        logprobs: logprobs ? { content } : null,
        finish_reason: answer.finishReason ?? (kept.length < pieces.length ? "length" : "stop"),
      },
    ],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: kept.length,
      total_tokens: promptTokens + kept.length,
    },
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

export async function startJudgeServer(options: JudgeServerOptions): Promise<JudgeServer> {
  const host = options.host ?? "127.0.0.1";
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const maxImages = options.maxImages ?? 8;
  const maxPixels = options.maxPixels ?? 4096 * 4096;
  if (options.models.length === 0) {
    throw new JudgeConfigError("startJudgeServer needs at least one judge model in `models`");
  }
  const models = new Map<string, JudgeModel>();
  for (const m of options.models) {
    if (models.has(m.id))
      throw new JudgeConfigError(`two judge models share the id "${m.id}"; ids must be unique`);
    models.set(m.id, m);
  }
  const keyDigest = options.apiKey ? digest(options.apiKey) : undefined;
  const created = Math.floor(Date.now() / 1000);
  const closing = new AbortController();

  function authorised(req: IncomingMessage): boolean {
    if (!keyDigest) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    return m !== null && timingSafeEqual(digest(m[1]), keyDigest);
  }

  async function chat(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const raw = await readBody(req, maxBodyBytes);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString("utf8"));
    } catch {
      throw bad("request body is not valid JSON");
    }
    const request = validateRequest(parsed);
    const model = models.get(request.model);
    if (!model) {
      throw new HttpError(
        404,
        `The model \`${request.model}\` does not exist; this server has ${[...models.keys()].map((k) => `\`${k}\``).join(", ")}`,
        "invalid_request_error",
        "model_not_found",
        "model",
      );
    }
    const urls: string[] = [];
    const texts: string[] = [];
    for (const msg of request.messages as ChatMessage[]) {
      if (typeof msg.content === "string") {
        if (msg.role === "user") texts.push(msg.content);
        continue;
      }
      for (const part of msg.content) {
        if (part.type === "image_url") urls.push(part.image_url.url);
        else if (msg.role === "user") texts.push(part.text);
      }
    }
    if (urls.length > maxImages)
      throw bad(`request has ${urls.length} images; this server accepts at most ${maxImages}`, "messages");
    let images: RgbImage[];
    try {
      images = await Promise.all(urls.map((u) => decodeImageDataUrl(u, { maxPixels })));
    } catch (err) {
      if (err instanceof ImageDecodeError) throw bad(err.message, "messages");
      throw err;
    }
    const logprobs = request.logprobs === true;
    const topLogprobs = logprobs ? (request.top_logprobs ?? 0) : 0;
    const maxTokens = request.max_tokens ?? request.max_completion_tokens ?? 16;
    const text = texts.join("\n");
    const judgeRequest: JudgeModelRequest = {
      model: request.model,
      images,
      text,
      messages: request.messages,
      maxTokens,
      temperature: request.temperature ?? 1,
      seed: request.seed,
      logprobs,
      topLogprobs,
      signal,
    };
    let reply: JudgeModelReply;
    try {
      reply = await model.judge(judgeRequest);
    } catch (err) {
      if (signal.aborted) return;
      // The request's fault: a 4xx, so clients do not send it again. Anything else is the server's.
      if (err instanceof JudgeInputError) throw bad(err.message, "messages");
      throw new HttpError(500, `judge model "${model.id}" failed: ${(err as Error).message}`, "server_error");
    }
    if (signal.aborted) return;
    // A crude prompt-token count: OpenAI clients expect usage, nothing here depends on it.
    const promptTokens =
      "fault" in reply || reply.promptTokens === undefined
        ? tokenise(text).length + images.length * 256
        : reply.promptTokens;
    if ("fault" in reply) {
      switch (reply.fault) {
        case "status": {
          const headers: Record<string, string> =
            reply.retryAfterS !== undefined ? { "retry-after": String(reply.retryAfterS) } : {};
          const type =
            reply.status >= 500
              ? "server_error"
              : reply.status === 429
                ? "rate_limit_error"
                : "invalid_request_error";
          sendError(
            res,
            new HttpError(reply.status, reply.message ?? `staged HTTP ${reply.status}`, type),
            headers,
          );
          return;
        }
        case "hang":
          await new Promise<void>((resolve) =>
            signal.addEventListener("abort", () => resolve(), { once: true }),
          );
          return;
        case "malformed-json":
          res.writeHead(200, { "content-type": "application/json" });
          res.end(
            '{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"index":0,"message":{"role":"assis',
          );
          return;
        case "drop-connection":
          res.writeHead(200, { "content-type": "application/json" });
          res.write('{"id":"chatcmpl-dropped","choices":[');
          await new Promise((r) => setImmediate(r));
          res.socket?.destroy();
          return;
        case "no-logprobs": {
          const body = completionFor(request, { text: reply.text ?? "4" }, maxTokens, false, 0, promptTokens);
          sendJson(res, 200, body);
          return;
        }
        default:
          reply satisfies never;
          throw new HttpError(500, "judge model staged an unknown fault", "server_error");
      }
    }
    if (reply.delayMs) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, reply.delayMs);
        signal.addEventListener(
          "abort",
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
      if (signal.aborted) return;
    }
    sendJson(res, 200, completionFor(request, reply, maxTokens, logprobs, topLogprobs, promptTokens));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort(new Error("client disconnected"));
    };
    res.on("close", onClose);
    const signal = AbortSignal.any([abort.signal, closing.signal]);
    try {
      const path = new URL(req.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "");
      const routes: Record<string, string> = { "/v1/chat/completions": "POST", "/v1/models": "GET" };
      if (!(path in routes)) {
        throw new HttpError(
          404,
          `no route ${req.method} ${path}; this judge serves POST /v1/chat/completions and GET /v1/models`,
          "invalid_request_error",
          "not_found",
        );
      }
      if (req.method !== routes[path]) {
        throw new HttpError(
          405,
          `${path} takes ${routes[path]}, not ${req.method}`,
          "invalid_request_error",
          "method_not_allowed",
        );
      }
      if (!authorised(req)) {
        throw new HttpError(
          401,
          "missing or incorrect API key; send Authorization: Bearer <key>",
          "invalid_request_error",
          "invalid_api_key",
        );
      }
      if (path === "/v1/models") {
        sendJson(res, 200, {
          object: "list",
          data: [...models.keys()].map((id) => ({ id, object: "model", created, owned_by: "edit-r1" })),
        });
        return;
      }
      await chat(req, res, signal);
    } catch (err) {
      if (res.headersSent || res.destroyed) return;
      const httpErr =
        err instanceof HttpError
          ? err
          : new HttpError(500, `judge server error: ${(err as Error).message}`, "server_error");
      if (httpErr.status === 413) res.setHeader("connection", "close");
      sendError(res, httpErr);
    } finally {
      res.off("close", onClose);
    }
  }

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new JudgeConfigError(`judge server could not listen on ${host}:${options.port ?? 0}: ${err.message}`),
      ),
    );
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${port}/v1`,
    close() {
      closed ??= (async () => {
        closing.abort(new Error("judge server closing"));
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await done;
        for (const m of models.values()) await m.close?.();
      })();
      return closed;
    },
  };
}
