/**
 * The Qwen2.5-VL judge as a Reward, and as a judge-server model. The reward builds the same chat request the
 * HTTP judge sends ([original image, edited image, text] in one user turn; a system message only when
 * given), so the prompt is what a served Qwen2.5-VL renders; by default the images also take the HTTP
 * route's JPEG round trip, so a score in process and a score through `edit-r1 judge serve` are the same
 * number. Scores come from the next-token logits: score-logit is Σ k·p_k / 5 over the six digit logits
 * (softmax among themselves, Edit-R1's rule), written as the same `RewardOutput` as the HTTP judge's.
 */
import { createHash } from "node:crypto";
import type { Reward, RewardInput, RewardOutput, RgbImage } from "@edit-r1/core";
import type { ChatMessage } from "./chat-types.js";
import { JudgeConfigError, JudgeResponseError, RewardItemError } from "./errors.js";
import {
  decodeImageDataUrl,
  encodeImageDataUrl,
  hashImage,
  type ImageEncoding,
  resolveImageEncoding,
} from "./image-data-url.js";
import type { JudgeModel } from "./judge-model.js";
import { MAX_SCORE } from "./judge-response.js";
import { type LatencySummary, summariseLatencies } from "./latency-stats.js";
import type { MllmJudgeRaw } from "./mllm-judge-reward.js";
import {
  openQwenVLJudge,
  type QwenVLJudge,
  type QwenVLJudgeOptions,
  type QwenVLLogits,
  rankLogits,
} from "./qwen-vl-judge.js";
import {
  expectedScore,
  parseScoreText,
  scoreDistribution,
  type TokenLogprob,
  yesProbability,
} from "./score.js";
import {
  checkTemplate,
  defaultTemplate,
  type JudgeMode,
  type JudgeTemplate,
  renderTemplate,
} from "./templates.js";

export interface QwenVLJudgeRewardOptions extends QwenVLJudgeOptions {
  /** Reward and component name. Default "qwen-vl". */
  name?: string;
  /**
   * A model folder or Hub repo id (opened here and closed with the reward), or an opened judge (shared,
   * e.g. with a judge server; the caller closes it).
   */
  model: string | QwenVLJudge;
  /** Default "score-logit". score-logit, yes-no and score-sample (the greedy token) run; the CoT modes need generation. */
  mode?: JudgeMode;
  template?: JudgeTemplate;
  /** Sent as a system message; none by default, so the chat template's default applies. */
  systemPrompt?: string;
  /**
   * What the judge sees of the images: an encoding to round-trip them through (default: the HTTP judge's,
   * JPEG q95 shrunk to ≤ 1024 px, decoded again), or false for the exact pixels.
   */
  image?: ImageEncoding | false;
  /** Candidates kept in `raw.candidates` (default 20, like the HTTP judge's top_logprobs). */
  topLogprobs?: number;
  /** Cache verdicts in memory by (template, rendered text, images). Default on, 100 000 entries. */
  cache?: boolean | { maxEntries?: number };
}

/** What `raw` holds: the HTTP judge's fields, plus the raw score-token logits. */
export interface QwenVLJudgeRaw extends MllmJudgeRaw {
  /** The logits of the score tokens "0" … "5" at the answer position (or of "Yes", "No" in yes-no mode). */
  logits: number[];
  promptTokens: number;
}

export interface QwenVLJudgeRewardStats {
  items: number;
  scored: number;
  cacheHits: number;
  failed: number;
  /** Per forward pass (several items when batched). */
  forwardMs: LatencySummary;
  forwards: number;
  compiles: number;
}

export interface QwenVLJudgeReward extends Reward {
  readonly judge: QwenVLJudge;
  readonly template: JudgeTemplate;
  stats(options?: { reset?: boolean }): QwenVLJudgeRewardStats;
}

/** The digit candidates of a logits row: each score token with its log-probability over the vocabulary. */
function digitCandidates(judge: QwenVLJudge, logits: Float32Array, logZ: number): TokenLogprob[] {
  return judge.scoreTokenIds.map((id, k) => ({ token: String(k), logprob: logits[id]! - logZ }));
}

/** Splits a judge's logits into the verdict of `mode`. */
function verdictOf(
  judge: QwenVLJudge,
  mode: JudgeMode,
  out: QwenVLLogits,
  topLogprobs: number,
  yesNo: readonly [number, number] | undefined,
): { score: number; raw: Omit<QwenVLJudgeRaw, "model" | "template" | "latencyMs" | "attempts" | "cached"> } {
  const { logZ, top } = rankLogits(out.logits, topLogprobs, (id) => judge.tokenText(id));
  const text = top[0]?.token ?? "";
  const candidates = top.map(({ token, logprob }) => ({ token, logprob }));
  const base = { mode, text, candidates, promptTokens: out.promptTokens };
  switch (mode) {
    case "score-logit": {
      const digits = digitCandidates(judge, out.logits, logZ);
      const distribution = scoreDistribution(digits, MAX_SCORE)!;
      const score = expectedScore(digits, MAX_SCORE)!;
      return {
        score,
        raw: { ...base, distribution, logits: judge.scoreTokenIds.map((id) => out.logits[id]!) },
      };
    }
    case "yes-no": {
      const [y, n] = yesNo!;
      const pair = [
        { token: "Yes", logprob: out.logits[y]! - logZ },
        { token: "No", logprob: out.logits[n]! - logZ },
      ];
      const yes = yesProbability(pair)!;
      return { score: yes, raw: { ...base, yes, logits: [out.logits[y]!, out.logits[n]!] } };
    }
    case "score-sample": {
      const k = parseScoreText(text, MAX_SCORE);
      if (k === undefined) {
        throw new JudgeResponseError(
          `judge's greedy answer ${JSON.stringify(text)} is no score 0–${MAX_SCORE}; use score-logit mode`,
        );
      }
      return { score: k / MAX_SCORE, raw: { ...base, logits: [] } };
    }
    default:
      throw new JudgeConfigError(
        `judge mode "${mode}" needs generated reasoning; the in-process Qwen2.5-VL judge scores one token ` +
          "(score-logit, yes-no, score-sample). Serve a generating model (vLLM) for the CoT modes.",
      );
  }
}

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

/** The chat request the HTTP judge sends for one item, images as placeholders. */
export function judgeMessages(text: string, systemPrompt?: string): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (systemPrompt) messages.push({ role: "system", content: systemPrompt });
  messages.push({
    role: "user",
    content: [
      { type: "image_url", image_url: { url: "original" } },
      { type: "image_url", image_url: { url: "edited" } },
      { type: "text", text },
    ],
  });
  return messages;
}

/**
 * The in-process Qwen2.5-VL judge reward. `score(batch)` renders each item's prompt, runs the forwards
 * (batched by the judge's `batchSize`, items with equal image sizes together) and returns Σ k·p_k / 5 with
 * `raw` as the HTTP judge writes it plus the score logits; identical items are judged once (cache).
 */
export async function createQwenVLJudgeReward(options: QwenVLJudgeRewardOptions): Promise<QwenVLJudgeReward> {
  const name = options.name ?? "qwen-vl";
  const template = options.template ?? defaultTemplate(options.mode ?? "score-logit");
  checkTemplate(template);
  const mode = template.mode;
  if (mode === "cot-score-logit" || mode === "cot-score-sample") {
    throw new JudgeConfigError(
      `judge mode "${mode}" needs generated reasoning; the in-process Qwen2.5-VL judge scores one token ` +
        "(score-logit, yes-no, score-sample). Serve a generating model (vLLM) for the CoT modes.",
    );
  }
  const encoding = options.image === false ? undefined : resolveImageEncoding(options.image);
  const topLogprobs = options.topLogprobs ?? 20;
  if (!Number.isInteger(topLogprobs) || topLogprobs < 1) {
    throw new JudgeConfigError(`topLogprobs ${topLogprobs} must be a positive integer`);
  }
  const owned = typeof options.model === "string";
  const judge =
    typeof options.model === "string" ? await openQwenVLJudge(options.model, options) : options.model;
  let yesNo: [number, number] | undefined;
  if (mode === "yes-no") {
    const y = judge.tokenId("Yes");
    const n = judge.tokenId("No");
    if (y === undefined || n === undefined) {
      if (owned) await judge.close();
      throw new JudgeConfigError(
        `${judge.description}: "Yes" and "No" are not single tokens; yes-no mode needs them`,
      );
    }
    yesNo = [y, n];
  }
  const cacheEnabled = options.cache !== false;
  const maxEntries = typeof options.cache === "object" ? (options.cache.maxEntries ?? 100_000) : 100_000;
  const verdicts = new BoundedMap<string, Promise<RewardOutput>>(maxEntries);
  const seen = new BoundedMap<string, Promise<RgbImage>>(256);
  const fresh = () => ({ items: 0, scored: 0, cacheHits: 0, failed: 0 });
  let counters = fresh();

  /** The pixels the judge sees: the HTTP route's encode → decode, shared by a group's one source. */
  function view(image: RgbImage, hash: string, what: string): Promise<RgbImage> {
    if (!encoding) return Promise.resolve(image);
    let out = seen.get(hash);
    if (!out) {
      out = encodeImageDataUrl(image, encoding, what).then((url) => decodeImageDataUrl(url));
      seen.set(hash, out);
      out.catch(() => seen.delete(hash));
    }
    return out;
  }

  async function judgeItems(
    items: readonly RewardInput[],
    signal: AbortSignal | undefined,
  ): Promise<RewardOutput[]> {
    const results = new Array<Promise<RewardOutput> | undefined>(items.length);
    const misses: { index: number; text: string; source: Promise<RgbImage>; edited: Promise<RgbImage> }[] =
      [];
    const keys: string[] = [];
    items.forEach((item, index) => {
      const text = renderTemplate(template, item);
      const sourceHash = hashImage(item.source);
      const editedHash = hashImage(item.edited);
      const key = createHash("sha256")
        .update(
          JSON.stringify([
            judge.id,
            template.id,
            text,
            options.systemPrompt ?? null,
            encoding ?? null,
            sourceHash,
            editedHash,
            topLogprobs,
          ]),
        )
        .digest("hex");
      keys.push(key);
      const hit = cacheEnabled ? verdicts.get(key) : undefined;
      if (hit) {
        counters.cacheHits++;
        results[index] = hit.then((out) => ({
          ...out,
          raw: { ...(out.raw as QwenVLJudgeRaw), cached: true, latencyMs: 0 },
        }));
        return;
      }
      misses.push({
        index,
        text,
        source: view(item.source, sourceHash, `item "${item.key}" source image`),
        edited: view(item.edited, editedHash, `item "${item.key}" edited image`),
      });
    });
    if (misses.length > 0) {
      const t0 = performance.now();
      const work = (async () => {
        const prompts = await Promise.all(
          misses.map(async (m) => ({
            messages: judgeMessages(m.text, options.systemPrompt),
            images: await Promise.all([m.source, m.edited]),
          })),
        );
        return judge.logits(prompts, signal ? { signal } : {});
      })();
      misses.forEach((m, i) => {
        const out = work.then((rows): RewardOutput => {
          const { score, raw } = verdictOf(judge, mode, rows[i]!, topLogprobs, yesNo);
          counters.scored++;
          const full: QwenVLJudgeRaw = {
            ...raw,
            model: judge.id,
            template: template.id,
            latencyMs: performance.now() - t0,
            attempts: 1,
            cached: false,
          };
          return { score, components: { [name]: score }, raw: full };
        });
        results[m.index] = out;
        if (cacheEnabled) {
          // A later identical item in this batch or the next shares the one forward.
          verdicts.set(keys[m.index]!, out);
          out.catch(() => verdicts.delete(keys[m.index]!));
        }
      });
    }
    const settled = await Promise.allSettled(results as Promise<RewardOutput>[]);
    const failedAt = settled.findIndex((s) => s.status === "rejected");
    if (failedAt >= 0) {
      counters.failed++;
      const err = (settled[failedAt] as PromiseRejectedResult).reason;
      if (signal?.aborted) throw err;
      throw new RewardItemError(name, items[failedAt]!.key, err);
    }
    return settled.map((s) => (s as PromiseFulfilledResult<RewardOutput>).value);
  }

  return {
    name,
    judge,
    template,
    async score(batch, opts) {
      counters.items += batch.length;
      return judgeItems(batch, opts?.signal);
    },
    stats(opts) {
      const c = counters;
      const j = judge.stats(opts);
      if (opts?.reset) counters = fresh();
      return { ...c, forwardMs: summariseLatencies(j.forwardMs), forwards: j.forwards, compiles: j.compiles };
    },
    async close() {
      verdicts.clear();
      seen.clear();
      if (owned) await judge.close();
    },
  };
}

/**
 * The judge as a judge-server model: each chat request is rendered with the model's chat template (system,
 * images, text, generation prompt), one forward pass gives the next-token logits, and the answer is the
 * greedy token with the top `top_logprobs` tokens' log-probabilities over the whole vocabulary — what vLLM
 * returns for `max_tokens: 1`. One token is generated whatever `max_tokens` asks (finish_reason "length"
 * then); sampling settings are ignored (greedy).
 */
export function qwenVLJudgeModel(
  judge: QwenVLJudge,
  options: { id?: string; close?: boolean } = {},
): JudgeModel {
  return {
    id: options.id ?? judge.id,
    async judge(request) {
      const [out] = await judge.logits([{ messages: request.messages, images: request.images }], {
        signal: request.signal,
      });
      const { top } = rankLogits(out!.logits, Math.max(1, request.topLogprobs), (id) => judge.tokenText(id));
      return {
        logprobs: top.map(({ token, logprob }) => ({ token, logprob })),
        finishReason: request.maxTokens > 1 ? "length" : "stop",
        promptTokens: out!.promptTokens,
      };
    },
    close: options.close === false ? undefined : () => judge.close(),
  };
}
