/**
 * The MLLM judge reward: each edit (original, edited, instruction, requirement) becomes one chat request
 * to an OpenAI-compatible server, and the answer's score-token logprobs become a score in [0, 1]
 * (Edit-R1's Σ k·p_k / 5 by default). Requests run concurrently with retries; results are cached by
 * judge model, template and image hashes; a failure after retries fails the batch, never a guessed score.
 */
import { createHash } from "node:crypto";
import { setMaxListeners } from "node:events";
import type { Reward, RewardInput, RewardOutput, RgbImage } from "@edit-r1/core";
import { type ChatClient, type ChatClientStats, createChatClient } from "./chat-client.js";
import type { ChatCompletionRequest, ChatMessage } from "./chat-types.js";
import { JudgeConfigError, RewardItemError } from "./errors.js";
import { encodeImageDataUrl, hashImage, type ImageEncoding, resolveImageEncoding } from "./image-data-url.js";
import { type JudgeVerdict, verdictFromCompletion } from "./judge-response.js";
import { type Env, type JudgeSettings, resolveJudgeSettings } from "./judge-settings.js";
import { type LatencySummary, summariseLatencies } from "./latency-stats.js";
import type { TokenLogprob } from "./score.js";
import {
  checkTemplate,
  defaultTemplate,
  type JudgeMode,
  type JudgeTemplate,
  renderTemplate,
} from "./templates.js";

export interface MllmJudgeOptions {
  /** Reward and component name. Default "mllm". */
  name?: string;
  /** API base ending in /v1. Default EDIT_R1_JUDGE_URL. */
  url?: string;
  /** Default EDIT_R1_JUDGE_MODEL, else the only model GET /models lists. */
  model?: string;
  /** Default EDIT_R1_JUDGE_API_KEY. */
  apiKey?: string;
  /** Where the EDIT_R1_JUDGE_* fallbacks are read. Default process.env. */
  env?: Env;
  /** Default "score-logit" (Edit-R1). Ignored when `template` is given: the template's mode counts. */
  mode?: JudgeMode;
  template?: JudgeTemplate;
  /** Sent as a system message; none by default, so the model's own default applies (Qwen's "helpful assistant"). */
  systemPrompt?: string;
  /** Alternatives per token. Default 20, the OpenAI and vLLM maximum. */
  topLogprobs?: number;
  /** Default 1 for the one-token modes, 8 for score-sample, 1024 for CoT. */
  maxTokens?: number;
  /** Default 0, so answers are reproducible and safe to cache. */
  temperature?: number;
  seed?: number;
  image?: ImageEncoding;
  /** Requests in flight. Default 16. */
  concurrency?: number;
  /** Per attempt. Default 60 000 ms. */
  timeoutMs?: number;
  /** Per item, retries included; then the batch fails naming the judge. Default 300 000 ms. */
  deadlineMs?: number;
  maxRetries?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Where retry lines go (`judge: no answer from … after 60 s, retry 2/5`). Default standard error. */
  log?: (line: string) => void;
  /** Cache verdicts in memory. Default on, 100 000 entries, oldest evicted first. */
  cache?: boolean | { maxEntries?: number };
}

/** What `raw` holds on every output of this reward. */
export interface MllmJudgeRaw {
  model: string;
  mode: JudgeMode;
  template: string;
  text: string;
  distribution?: number[];
  yes?: number;
  candidates?: TokenLogprob[];
  /** Request latency, backoff included; 0 when cached. */
  latencyMs: number;
  attempts: number;
  cached: boolean;
}

export interface MllmJudgeStats {
  /** Items asked for, cache hits included. */
  items: number;
  scored: number;
  cacheHits: number;
  failed: number;
  /** Failures by error class name (JudgeRequestError, JudgeResponseError, …). */
  failuresByKind: Record<string, number>;
  /** Client-side image encoding per item (both images; encodings reused across a group are free). */
  encodeMs: LatencySummary;
  http: ChatClientStats;
}

export interface MllmJudgeReward extends Reward {
  readonly settings: Readonly<Omit<JudgeSettings, "apiKey">> & { apiKey: "set" | "not set" };
  readonly template: JudgeTemplate;
  /** Counters since creation or the last reset, for the run's metrics. */
  stats(options?: { reset?: boolean }): MllmJudgeStats;
}

const DEFAULT_MAX_TOKENS: Record<JudgeMode, number> = {
  "score-logit": 1,
  "yes-no": 1,
  "score-sample": 8,
  "cot-score-logit": 1024,
  "cot-score-sample": 1024,
};

/** A bounded map that forgets its oldest entries first. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly maxEntries: number) {
    super();
  }
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.maxEntries) this.delete(this.keys().next().value as K);
    return super.set(key, value);
  }
}

export function createMllmJudgeReward(options: MllmJudgeOptions = {}): MllmJudgeReward {
  const name = options.name ?? "mllm";
  const settings = resolveJudgeSettings(options, options.env ?? process.env);
  const template = options.template ?? defaultTemplate(options.mode ?? "score-logit");
  checkTemplate(template);
  const mode = template.mode;
  const encoding = resolveImageEncoding(options.image);
  const topLogprobs = options.topLogprobs ?? 20;
  if (!Number.isInteger(topLogprobs) || topLogprobs < 1 || topLogprobs > 20) {
    throw new JudgeConfigError(`topLogprobs ${topLogprobs} must be an integer from 1 to 20`);
  }
  const maxTokens = options.maxTokens ?? DEFAULT_MAX_TOKENS[mode];
  if (!Number.isInteger(maxTokens) || maxTokens < 1)
    throw new JudgeConfigError(`maxTokens ${maxTokens} must be a positive integer`);
  const temperature = options.temperature ?? 0;
  const client: ChatClient = createChatClient({
    baseUrl: settings.url,
    apiKey: settings.apiKey,
    concurrency: options.concurrency,
    timeoutMs: options.timeoutMs,
    deadlineMs: options.deadlineMs,
    log: options.log,
    maxRetries: options.maxRetries,
    retryBaseMs: options.retryBaseMs,
    retryMaxMs: options.retryMaxMs,
  });
  const wantsLogprobs = mode !== "score-sample" && mode !== "cot-score-sample";
  const cacheEnabled = options.cache !== false;
  const maxEntries = typeof options.cache === "object" ? (options.cache.maxEntries ?? 100_000) : 100_000;
  const verdicts = new BoundedMap<string, Promise<RewardOutput>>(maxEntries);
  // One source image is judged K times per group; encode it once.
  const encoded = new BoundedMap<string, Promise<string>>(256);
  let model: Promise<string> | undefined = settings.model ? Promise.resolve(settings.model) : undefined;

  const fresh = () => ({
    items: 0,
    scored: 0,
    cacheHits: 0,
    failed: 0,
    failuresByKind: {} as Record<string, number>,
    encodeMs: [] as number[],
  });
  let counters = fresh();

  function resolveModel(signal: AbortSignal): Promise<string> {
    model ??= client.listModels({ signal }).then((ids) => {
      if (ids.length === 1) return ids[0];
      throw new JudgeConfigError(
        `judge at ${settings.url} serves ${ids.length} models (${ids.join(", ") || "none"}); choose one with ` +
          "model=… in the spec, the model option or EDIT_R1_JUDGE_MODEL",
      );
    });
    model.catch(() => {
      model = undefined;
    });
    return model;
  }

  function encode(image: RgbImage, hash: string, what: string): Promise<string> {
    let url = encoded.get(hash);
    if (!url) {
      url = encodeImageDataUrl(image, encoding, what);
      encoded.set(hash, url);
      url.catch(() => encoded.delete(hash));
    }
    return url;
  }

  async function judgeItem(item: RewardInput, modelId: string, signal: AbortSignal): Promise<RewardOutput> {
    const text = renderTemplate(template, item);
    const sourceHash = hashImage(item.source);
    const editedHash = hashImage(item.edited);
    const key = createHash("sha256")
      .update(
        JSON.stringify([
          modelId,
          template.id,
          text,
          options.systemPrompt ?? null,
          mode,
          maxTokens,
          temperature,
          options.seed ?? null,
          topLogprobs,
          encoding,
          sourceHash,
          editedHash,
        ]),
      )
      .digest("hex");
    const hit = cacheEnabled ? verdicts.get(key) : undefined;
    if (hit) {
      counters.cacheHits++;
      const out = await hit;
      return { ...out, raw: { ...(out.raw as MllmJudgeRaw), cached: true, latencyMs: 0 } };
    }
    const work = (async (): Promise<RewardOutput> => {
      const t0 = performance.now();
      const [source, edited] = await Promise.all([
        encode(item.source, sourceHash, `item "${item.key}" source image`),
        encode(item.edited, editedHash, `item "${item.key}" edited image`),
      ]);
      counters.encodeMs.push(performance.now() - t0);
      const messages: ChatMessage[] = [];
      if (options.systemPrompt) messages.push({ role: "system", content: options.systemPrompt });
      messages.push({
        role: "user",
        content: [
          { type: "image_url", image_url: { url: source } },
          { type: "image_url", image_url: { url: edited } },
          { type: "text", text },
        ],
      });
      const request: ChatCompletionRequest = { model: modelId, messages, max_tokens: maxTokens, temperature };
      if (options.seed !== undefined) request.seed = options.seed;
      if (wantsLogprobs) {
        request.logprobs = true;
        request.top_logprobs = topLogprobs;
      }
      const result = await client.complete(request, { signal });
      const verdict: JudgeVerdict = verdictFromCompletion(result.body, mode);
      const raw: MllmJudgeRaw = {
        model: modelId,
        mode,
        template: template.id,
        text: verdict.text,
        latencyMs: result.latencyMs,
        attempts: result.attempts,
        cached: false,
      };
      if (verdict.distribution) raw.distribution = verdict.distribution;
      if (verdict.yes !== undefined) raw.yes = verdict.yes;
      if (verdict.candidates) raw.candidates = verdict.candidates;
      counters.scored++;
      return { score: verdict.score, components: { [name]: verdict.score }, raw };
    })();
    if (cacheEnabled) {
      verdicts.set(key, work);
      work.catch(() => verdicts.delete(key));
    }
    return work;
  }

  return {
    name,
    template,
    settings: { url: settings.url, model: settings.model, apiKey: settings.apiKey ? "set" : "not set" },
    async score(batch, opts) {
      const stop = new AbortController();
      const signal = opts?.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
      // Every item in flight listens on the batch signal; a 288-item batch is not a listener leak.
      setMaxListeners(0, stop.signal, signal);
      counters.items += batch.length;
      let first: unknown;
      const settled = await Promise.allSettled(
        batch.map(async (item) => {
          try {
            const modelId = await resolveModel(signal);
            return await judgeItem(item, modelId, signal);
          } catch (err) {
            // The first real failure stops the rest of the batch; the aborts it causes are not failures.
            if (first === undefined && !(stop.signal.aborted && err === stop.signal.reason)) {
              first = opts?.signal?.aborted ? err : new RewardItemError(name, item.key, err);
              const kind = (err as Error)?.name ?? "Error";
              counters.failed++;
              counters.failuresByKind[kind] = (counters.failuresByKind[kind] ?? 0) + 1;
              stop.abort(new Error(`batch stopped: item "${item.key}" failed`));
            }
            throw err;
          }
        }),
      );
      if (first !== undefined) throw first;
      return settled.map((s) => (s as PromiseFulfilledResult<RewardOutput>).value);
    },
    stats(opts) {
      const c = counters;
      if (opts?.reset) counters = fresh();
      return {
        items: c.items,
        scored: c.scored,
        cacheHits: c.cacheHits,
        failed: c.failed,
        failuresByKind: { ...c.failuresByKind },
        encodeMs: summariseLatencies(c.encodeMs),
        http: client.stats(opts),
      };
    },
    async close() {
      verdicts.clear();
      encoded.clear();
    },
  };
}
