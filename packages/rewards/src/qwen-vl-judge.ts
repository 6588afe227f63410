/**
 * An MLLM judge in process: any Qwen2.5-VL checkpoint (Qwen/Qwen2.5-VL-7B-Instruct, -32B, -72B, a replica)
 * run by our own engine. A chat request is rendered by the model's chat template, tokenized by its
 * tokenizer.json with every `<|image_pad|>` widened to its image's merged patch count, the images are resized
 * and cut into patches by the Qwen2-VL processor rules of its preprocessor_config.json, and one forward pass
 * of the encoder plus `lm_head` at the answer position gives the next-token logits — what vLLM's first
 * decode step sees, without generating anything.
 *
 * Forwards run one at a time from a queue; up to `batchSize` queued prompts whose images have the same grids
 * run together, right-padded to a common length (causal attention makes the padding invisible to the real
 * tokens) with `lm_head` taken at each row's own last token. Token rows are padded to a multiple of
 * `lengthBucket`, so prompts of nearby lengths share one compiled session; sessions are kept per
 * (batch, length, image grids), the least recently used disposed beyond `maxSessions`.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { RgbImage } from "@edit-r1/core";
import { compile, type Device, Graph, type Session } from "@edit-r1/engine";
import { type ResolveOptions, resolveSafetensorsWeights, resolveSnapshotDir } from "@edit-r1/hub";
import {
  buildQwen25VLEncoder,
  type ComputeDType,
  loadTextTokenizer,
  openSafetensorsWeights,
  parseQwen2VLProcessorConfig,
  parseQwen25VLConfig,
  type Qwen2VLPatches,
  type Qwen2VLProcessorConfig,
  type Qwen25VLConfig,
  qwen2VLResizeAndPatch,
  qwen25VLRopeIndexBatch,
  type TextTokenizer,
  type WeightSource,
} from "@edit-r1/models";
import type { ChatMessage } from "./chat-types.js";
import { JudgeConfigError } from "./errors.js";
import { MAX_SCORE } from "./judge-response.js";
import { type ChatTemplate, loadChatTemplate, parseChatTemplate } from "./qwen-vl-chat.js";
import type { TokenLogprob } from "./score.js";

export interface QwenVLJudgeOptions {
  /** The id the judge server lists and clients name. Default: the model argument as given. */
  id?: string;
  /** Default "cpu". */
  device?: Device;
  /** Compute dtype; bf16 checkpoints are cast in the graph. Default float32. */
  dtype?: ComputeDType;
  /** onnxruntime intra-op threads. */
  threads?: number;
  /**
   * Prompts per forward pass (default 1). Several are right-padded to one length; their images go through the
   * vision tower together, whose attention mask grows with the square of all their patches.
   */
  batchSize?: number;
  /** Token rows are padded to a multiple of this (default 32) so nearby lengths share a session. */
  lengthBucket?: number;
  /**
   * Compiled sessions kept (default 4), one per (batch, length, image grids). With CUDA every session holds
   * its own copy of the weights on the device: keep this at 1 for a judge that fills the GPU.
   */
  maxSessions?: number;
  /** A Jinja chat template to use instead of the model's own. */
  chatTemplate?: string;
  /** Where to find a Hub repo id (offline: the local cache only). */
  hub?: ResolveOptions;
}

/** Everything a judge needs, loaded: `openQwenVLJudge` reads them from a model folder. */
export interface QwenVLJudgeParts {
  config: Qwen25VLConfig;
  weights: WeightSource;
  tokenizer: TextTokenizer;
  processor: Qwen2VLProcessorConfig;
  chatTemplate: ChatTemplate;
  /** For messages: the folder or repo. */
  description: string;
}

/** One chat request to score: the messages (image parts as placeholders) and their images in order. */
export interface QwenVLPrompt {
  messages: readonly ChatMessage[];
  images: readonly RgbImage[];
}

/** A prompt tokenized and its images cut into patches: what one row of a forward pass needs. */
export interface PreparedQwenVLPrompt {
  /** Token ids, each image's `<|image_pad|>` widened to t·h·w / merge² copies. */
  ids: Int32Array;
  /** Each image's patch rows and grid, in order. */
  patches: readonly Qwen2VLPatches[];
  /** The rendered prompt text before widening (for logs and tests). */
  text?: string;
}

/** The next-token logits at the answer position of one prompt. */
export interface QwenVLLogits {
  /** `lm_head(hidden_states[-1])` at the prompt's last token, [vocab_size] float32. */
  logits: Float32Array;
  /** Prompt length in tokens (images widened). */
  promptTokens: number;
}

export interface QwenVLJudgeStats {
  /** Prompts scored. */
  prompts: number;
  /** Forward passes run. */
  forwards: number;
  /** Sessions compiled (a new shape, or one evicted earlier). */
  compiles: number;
  /** Milliseconds per forward pass, session compile excluded. */
  forwardMs: number[];
}

export interface QwenVLJudge {
  readonly id: string;
  readonly config: Qwen25VLConfig;
  readonly description: string;
  /** Token ids of the score digits "0" … "5" in this tokenizer (15 … 20 in Qwen's). */
  readonly scoreTokenIds: readonly number[];
  readonly batchSize: number;
  /** Renders, tokenizes and patches one prompt (checks that its images and placeholders agree). */
  prepare(prompt: QwenVLPrompt): PreparedQwenVLPrompt;
  /** The next-token logits of each prompt, forwards batched as the options allow. */
  logits(prompts: readonly QwenVLPrompt[], options?: { signal?: AbortSignal }): Promise<QwenVLLogits[]>;
  /** The same from prepared prompts. */
  forward(
    prompts: readonly PreparedQwenVLPrompt[],
    options?: { signal?: AbortSignal },
  ): Promise<QwenVLLogits[]>;
  /** The text of a token as an OpenAI server writes it (decoded; special tokens kept). */
  tokenText(id: number): string;
  /** The id of a token string, when it is one token. */
  tokenId(token: string): number | undefined;
  stats(options?: { reset?: boolean }): QwenVLJudgeStats;
  close(): Promise<void>;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) {
    throw new JudgeConfigError(
      `${path} is missing; a Qwen2.5-VL judge folder needs it (download the whole model)`,
    );
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new JudgeConfigError(`${path} is not valid JSON (${(err as Error).message}); re-download it`);
  }
}

/**
 * Opens a Qwen2.5-VL checkpoint as a judge: `model` is a local folder or a Hub repo id in the local cache
 * (nothing is downloaded). Reads config.json, the safetensors (single or sharded), tokenizer.json with
 * tokenizer_config.json, preprocessor_config.json and the chat template; weights stay in their files.
 */
export async function openQwenVLJudge(model: string, options: QwenVLJudgeOptions = {}): Promise<QwenVLJudge> {
  const dir = await resolveSnapshotDir(model, options.hub);
  const configPath = join(dir, "config.json");
  const config = parseQwen25VLConfig(await readJson(configPath), configPath);
  const found = await resolveSafetensorsWeights(dir, "", options.hub);
  const weights = await openSafetensorsWeights(found.index ?? found.files[0]!);
  const tokenizer = await loadTextTokenizer(dir);
  const processorPath = join(dir, "preprocessor_config.json");
  const processor = parseQwen2VLProcessorConfig(await readJson(processorPath), processorPath);
  const chatTemplate = options.chatTemplate
    ? parseChatTemplate(options.chatTemplate, "the chatTemplate option")
    : await loadChatTemplate(dir);
  return createQwenVLJudge(
    { config, weights, tokenizer, processor, chatTemplate, description: model },
    { ...options, id: options.id ?? model },
  );
}

interface Queued {
  prompt: PreparedQwenVLPrompt;
  signature: string;
  signal: AbortSignal | undefined;
  resolve: (v: QwenVLLogits) => void;
  reject: (e: unknown) => void;
}

const positiveInt = (v: number, what: string) => {
  if (!Number.isInteger(v) || v < 1)
    throw new JudgeConfigError(`${what} must be a positive integer, got ${v}`);
  return v;
};

/** A judge from loaded parts (a model folder's files, or a fixture's config and weights). */
export function createQwenVLJudge(parts: QwenVLJudgeParts, options: QwenVLJudgeOptions = {}): QwenVLJudge {
  const { config, weights, tokenizer, processor, chatTemplate } = parts;
  const batchSize = positiveInt(options.batchSize ?? 1, "batchSize");
  const bucket = positiveInt(options.lengthBucket ?? 32, "lengthBucket");
  const maxSessions = positiveInt(options.maxSessions ?? 4, "maxSessions");
  const v = config.vision;
  if (processor.patchSize !== v.patchSize || processor.mergeSize !== v.spatialMergeSize) {
    throw new JudgeConfigError(
      `${parts.description}: preprocessor_config.json cuts ${processor.patchSize}-px patches merged ${processor.mergeSize}×${processor.mergeSize}, ` +
        `but the vision tower takes ${v.patchSize}-px patches merged ${v.spatialMergeSize}×${v.spatialMergeSize}`,
    );
  }
  const tok = tokenizer.tokenizer;
  const imagePad = "<|image_pad|>";
  const padTokenId = tok.token_to_id(imagePad);
  if (padTokenId !== config.imageTokenId) {
    throw new JudgeConfigError(
      `${parts.description}: "${imagePad}" is token ${padTokenId ?? "(missing)"} in the tokenizer but config.json's ` +
        `image_token_id is ${config.imageTokenId}; the tokenizer and the model do not belong together`,
    );
  }
  const scoreTokenIds = Array.from({ length: MAX_SCORE + 1 }, (_, k) => {
    const id = tok.token_to_id(String(k));
    if (id === undefined || id >= config.vocabSize) {
      throw new JudgeConfigError(
        `${parts.description}: the score digit "${k}" is not a single token of the vocabulary; a score-logit judge needs "0"…"${MAX_SCORE}" as tokens`,
      );
    }
    return id;
  });
  const merge = v.spatialMergeSize ** 2;
  const rowWidth = v.inChannels * v.temporalPatchSize * v.patchSize ** 2;
  const sessions = new Map<string, Promise<Session>>();
  const queue: Queued[] = [];
  let running = false;
  let closed = false;
  const fresh = (): QwenVLJudgeStats => ({ prompts: 0, forwards: 0, compiles: 0, forwardMs: [] });
  let counters = fresh();

  function prepare(prompt: QwenVLPrompt): PreparedQwenVLPrompt {
    const text = chatTemplate.render(prompt.messages);
    const patches = prompt.images.map((image) => qwen2VLResizeAndPatch(image, processor));
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const slots = ids.filter((id: number) => id === config.imageTokenId).length;
    if (slots !== patches.length) {
      throw new JudgeConfigError(
        `${parts.description}: the rendered prompt has ${slots} image placeholder(s) but the request carries ` +
          `${patches.length} image(s); the chat template (${chatTemplate.source}) must write one ${imagePad} per image`,
      );
    }
    const out: number[] = [];
    let k = 0;
    for (const id of ids) {
      if (id !== config.imageTokenId) {
        out.push(id);
        continue;
      }
      const [t, h, w] = patches[k++]!.grid;
      for (let i = 0; i < (t * h * w) / merge; i++) out.push(id);
    }
    return { ids: Int32Array.from(out), patches, text };
  }

  const signatureOf = (p: PreparedQwenVLPrompt) => p.patches.map((q) => q.grid.join("x")).join(",");

  function session(
    key: string,
    batch: number,
    length: number,
    grids: readonly (readonly [number, number, number])[],
  ): Promise<Session> {
    const hit = sessions.get(key);
    if (hit) {
      sessions.delete(key);
      sessions.set(key, hit);
      return hit;
    }
    const g = new Graph("qwen25vl_judge");
    const patchRows = grids.reduce((n, [t, h, w]) => n + t * h * w, 0);
    const { logits } = buildQwen25VLEncoder(
      g,
      config,
      weights,
      {
        inputIds: g.input("input_ids", "int64", [batch, length]),
        ...(patchRows > 0 ? { pixelValues: g.input("pixel_values", "float32", [patchRows, rowWidth]) } : {}),
        imageGrids: grids,
        positionIds: g.input("position_ids", "int64", [3, batch, length]),
      },
      { dtype: options.dtype, logitsAt: g.input("answer_at", "int64", [batch]) },
    );
    counters.compiles++;
    const made = compile(g, {
      outputs: { logits: logits! },
      ...(options.device ? { device: options.device } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    });
    sessions.set(key, made);
    made.catch(() => {
      if (sessions.get(key) === made) sessions.delete(key);
    });
    // Runs are serialised by the queue, so an evicted session is idle.
    while (sessions.size > maxSessions) {
      const [oldKey, old] = sessions.entries().next().value as [string, Promise<Session>];
      sessions.delete(oldKey);
      void old.then((s) => s.dispose()).catch(() => undefined);
    }
    return made;
  }

  async function run(batch: readonly PreparedQwenVLPrompt[]): Promise<QwenVLLogits[]> {
    const b = batch.length;
    const longest = Math.max(...batch.map((p) => p.ids.length));
    const length = Math.ceil(longest / bucket) * bucket;
    const pad = tokenizer.padId;
    const rows = batch.map((p) => {
      const row = new Array<number>(length).fill(pad);
      p.ids.forEach((id, i) => {
        row[i] = id;
      });
      return row;
    });
    const grids = batch.flatMap((p) => p.patches.map((q) => q.grid));
    const { positionIds } = qwen25VLRopeIndexBatch(rows, grids, config);
    const feeds: Record<string, BigInt64Array | Float32Array> = {
      input_ids: BigInt64Array.from(rows.flat(), (id) => BigInt(id)),
      position_ids: BigInt64Array.from(positionIds, (p) => BigInt(p)),
      answer_at: BigInt64Array.from(batch, (p) => BigInt(p.ids.length - 1)),
    };
    if (grids.length > 0) {
      const size = batch.reduce((n, p) => n + p.patches.reduce((m, q) => m + q.pixelValues.length, 0), 0);
      const pixels = new Float32Array(size);
      let at = 0;
      for (const p of batch) {
        for (const q of p.patches) {
          pixels.set(q.pixelValues, at);
          at += q.pixelValues.length;
        }
      }
      feeds.pixel_values = pixels;
    }
    const key = `${b}x${length}:${grids.map((g) => g.join("x")).join(",")}`;
    const s = await session(key, b, length, grids);
    const t0 = performance.now();
    const out = (await s.run(feeds, { transfer: true })).logits as Float32Array;
    counters.forwardMs.push(performance.now() - t0);
    counters.forwards++;
    counters.prompts += b;
    const vocab = config.vocabSize;
    return batch.map((p, i) => ({
      logits: out.slice(i * vocab, (i + 1) * vocab),
      promptTokens: p.ids.length,
    }));
  }

  async function pump(): Promise<void> {
    if (running) return;
    running = true;
    try {
      while (queue.length > 0) {
        const signature = queue[0]!.signature;
        const taken: Queued[] = [];
        for (let i = 0; i < queue.length && taken.length < batchSize; ) {
          if (queue[i]!.signature === signature) taken.push(...queue.splice(i, 1));
          else i++;
        }
        const live = taken.filter((q) => {
          if (!q.signal?.aborted) return true;
          q.reject(q.signal.reason);
          return false;
        });
        if (live.length === 0) continue;
        try {
          const out = await run(live.map((q) => q.prompt));
          live.forEach((q, i) => {
            q.resolve(out[i]!);
          });
        } catch (err) {
          for (const q of live) q.reject(err);
        }
      }
    } finally {
      running = false;
    }
  }

  function forward(
    prompts: readonly PreparedQwenVLPrompt[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<QwenVLLogits[]> {
    if (closed)
      return Promise.reject(new JudgeConfigError(`judge ${options.id ?? parts.description} is closed`));
    const done = prompts.map((prompt) => {
      if (prompt.ids.length === 0) throw new JudgeConfigError("a judge prompt has no tokens");
      return new Promise<QwenVLLogits>((resolve, reject) =>
        queue.push({ prompt, signature: signatureOf(prompt), signal: opts.signal, resolve, reject }),
      );
    });
    void pump();
    return Promise.all(done);
  }

  return {
    id: options.id ?? parts.description,
    config,
    description: parts.description,
    scoreTokenIds,
    batchSize,
    prepare,
    forward,
    async logits(prompts, opts) {
      return forward(
        prompts.map((p) => prepare(p)),
        opts,
      );
    },
    tokenText(id) {
      return tok.decode([id], { skip_special_tokens: false });
    },
    tokenId(token) {
      return tok.token_to_id(token);
    },
    stats(opts) {
      const c = counters;
      if (opts?.reset) counters = fresh();
      return { ...c, forwardMs: [...c.forwardMs] };
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const q of queue.splice(0)) q.reject(new JudgeConfigError("the judge was closed"));
      const all = await Promise.allSettled(sessions.values());
      sessions.clear();
      await Promise.all(all.map((s) => (s.status === "fulfilled" ? s.value.dispose() : undefined)));
    },
  };
}

/**
 * log-softmax over the whole vocabulary (float64, in index order) and the `k` likeliest tokens with their
 * log-probabilities, likeliest first (ties by id); ids without token text are left out of the list.
 */
export function rankLogits(
  logits: Float32Array,
  k: number,
  text: (id: number) => string | undefined,
): { logZ: number; top: Array<TokenLogprob & { id: number }> } {
  let max = Number.NEGATIVE_INFINITY;
  for (const l of logits) if (l > max) max = l;
  let sum = 0;
  for (const l of logits) sum += Math.exp(l - max);
  const logZ = max + Math.log(sum);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const top: Array<TokenLogprob & { id: number }> = [];
  for (const id of order) {
    if (top.length >= k) break;
    const token = text(id);
    if (token === undefined || token === "") continue;
    top.push({ id, token, logprob: logits[id]! - logZ });
  }
  return { logZ, top };
}
