/**
 * Reward spec strings for the CLI's --reward and --judge flags:
 *
 *   spec      = part ("," part)*
 *   part      = [weight "*"] kind [":" target] ["?" option ("&" option)*]
 *
 *   mllm:http://127.0.0.1:8000/v1?model=Qwen2.5-VL-32B-Instruct
 *   mllm?mode=yes-no                       (URL, model and key from EDIT_R1_JUDGE_*)
 *   mllm:http://h:8000/v1?timeout=120&deadline=600   (seconds per attempt, and per item with retries)
 *   0.8*mllm:http://h:8000/v1,0.2*shapes   (weighted sum; weights are relative)
 *   qwen-vl:Qwen/Qwen2.5-VL-7B-Instruct?device=cuda&dtype=float16   (the judge in process)
 *
 * Everything after "?" configures our reward, not the server URL. Keys never go into specs (they end up
 * in logs): the key comes from EDIT_R1_JUDGE_API_KEY, or from the variable named by apiKeyEnv=NAME.
 */
import type { Reward } from "@edit-r1/core";
import { composeRewards } from "./compose-rewards.js";
import { JudgeConfigError } from "./errors.js";
import type { ImageFormat } from "./image-data-url.js";
import type { Env } from "./judge-settings.js";
import { createMllmJudgeReward, type MllmJudgeOptions } from "./mllm-judge-reward.js";
import { createQwenVLJudgeReward, type QwenVLJudgeRewardOptions } from "./qwen-vl-judge-reward.js";
import { JUDGE_MODES, type JudgeMode } from "./templates.js";

export interface RewardSpecPart {
  kind: string;
  /** Default 1. */
  weight: number;
  /** What follows "kind:", e.g. the judge URL. */
  target: string | undefined;
  options: Record<string, string>;
  /** options.name, else the kind. */
  name: string;
}

export type RewardFactory = (part: RewardSpecPart, context: { env: Env }) => Reward | Promise<Reward>;

const PART = /^(?:([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*\*\s*)?([a-z][a-z0-9_-]*)(?::([^?]*))?(?:\?(.*))?$/i;

export function parseRewardSpec(spec: string): RewardSpecPart[] {
  const pieces = spec.split(",").map((s) => s.trim());
  if (pieces.length === 0 || pieces.some((p) => p === "")) {
    throw new JudgeConfigError(
      `reward spec "${spec}" has an empty part; write kind[:target][?options] parts separated by commas`,
    );
  }
  return pieces.map((piece) => {
    const m = PART.exec(piece);
    if (!m) {
      throw new JudgeConfigError(
        `reward spec part "${piece}" is malformed; write [weight*]kind[:target][?key=value&…], e.g. mllm:http://127.0.0.1:8000/v1?model=NAME`,
      );
    }
    const options: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(m[4] ?? "")) {
      if (/^(api[_-]?key|key|(access[_-]?)?token|secret|password|bearer)$/i.test(k)) {
        throw new JudgeConfigError(
          `reward spec option "${k}" looks like a credential; specs are logged, so set EDIT_R1_JUDGE_API_KEY or apiKeyEnv=VARIABLE instead`,
        );
      }
      options[k] = v;
    }
    const weight = m[1] === undefined ? 1 : Number(m[1]);
    return {
      kind: m[2].toLowerCase(),
      weight,
      target: m[3] || undefined,
      options,
      name: options.name ?? m[2].toLowerCase(),
    };
  });
}

const MLLM_OPTIONS = [
  "name",
  "model",
  "mode",
  "apiKeyEnv",
  "concurrency",
  "timeout",
  "timeoutMs",
  "deadline",
  "retries",
  "topLogprobs",
  "maxTokens",
  "temperature",
  "seed",
  "format",
  "quality",
  "maxSide",
  "cache",
] as const;

function numberOption(part: RewardSpecPart, key: string): number | undefined {
  const v = part.options[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new JudgeConfigError(`reward spec option ${key}=${v} of "${part.name}" is not a number`);
  }
  return n;
}

/** The MllmJudgeOptions an `mllm` spec part stands for. */
export function mllmOptionsFromSpec(part: RewardSpecPart, env: Env = process.env): MllmJudgeOptions {
  for (const key of Object.keys(part.options)) {
    if (!(MLLM_OPTIONS as readonly string[]).includes(key)) {
      throw new JudgeConfigError(
        `reward spec option "${key}" is unknown for mllm; known options: ${MLLM_OPTIONS.join(", ")}`,
      );
    }
  }
  const o = part.options;
  if (o.mode !== undefined && !JUDGE_MODES.includes(o.mode as JudgeMode)) {
    throw new JudgeConfigError(`reward spec mode=${o.mode} is unknown; use one of ${JUDGE_MODES.join(", ")}`);
  }
  if (o.cache !== undefined && !["on", "off", "true", "false"].includes(o.cache)) {
    throw new JudgeConfigError(`reward spec cache=${o.cache} must be on or off`);
  }
  let apiKey: string | undefined;
  if (o.apiKeyEnv !== undefined) {
    apiKey = env[o.apiKeyEnv];
    if (!apiKey)
      throw new JudgeConfigError(`reward spec apiKeyEnv=${o.apiKeyEnv} names an unset environment variable`);
  }
  const seconds = (key: string): number | undefined => {
    const v = numberOption(part, key);
    if (v !== undefined && !(v > 0)) {
      throw new JudgeConfigError(
        `reward spec option ${key}=${part.options[key]} must be a number of seconds > 0`,
      );
    }
    return v === undefined ? undefined : v * 1000;
  };
  if (o.timeout !== undefined && o.timeoutMs !== undefined) {
    throw new JudgeConfigError("reward spec gives both timeout= (seconds) and timeoutMs=; keep one");
  }
  return {
    name: part.name,
    url: part.target,
    model: o.model,
    apiKey,
    env,
    mode: o.mode as JudgeMode | undefined,
    concurrency: numberOption(part, "concurrency"),
    timeoutMs: seconds("timeout") ?? numberOption(part, "timeoutMs"),
    deadlineMs: seconds("deadline"),
    maxRetries: numberOption(part, "retries"),
    topLogprobs: numberOption(part, "topLogprobs"),
    maxTokens: numberOption(part, "maxTokens"),
    temperature: numberOption(part, "temperature"),
    seed: numberOption(part, "seed"),
    image: {
      format: o.format as ImageFormat | undefined,
      quality: numberOption(part, "quality"),
      maxSide: numberOption(part, "maxSide"),
    },
    cache: o.cache === undefined ? undefined : o.cache === "on" || o.cache === "true",
  };
}

const QWEN_VL_OPTIONS = [
  "name",
  "id",
  "mode",
  "device",
  "dtype",
  "threads",
  "batch",
  "bucket",
  "sessions",
  "topLogprobs",
  "image",
  "format",
  "quality",
  "maxSide",
  "cache",
] as const;

/**
 * The options a `qwen-vl:<folder or repo>` spec part stands for (the in-process Qwen2.5-VL judge): `device`
 * (cpu|cuda), `dtype` (float32|float16), `threads`, `batch` (prompts per forward), `bucket` (token rows
 * padded to a multiple), `sessions` (compiled shapes kept), `id` (the served model id), `mode`, `name`,
 * `topLogprobs`, `cache` (on|off), and what the judge sees of the images: `image=http` (default: the HTTP
 * judge's encoding, tuned by `format`, `quality`, `maxSide`) or `image=exact` (the pixels as they are).
 */
export function qwenVLOptionsFromSpec(part: RewardSpecPart): QwenVLJudgeRewardOptions {
  for (const key of Object.keys(part.options)) {
    if (!(QWEN_VL_OPTIONS as readonly string[]).includes(key)) {
      throw new JudgeConfigError(
        `reward spec option "${key}" is unknown for qwen-vl; known options: ${QWEN_VL_OPTIONS.join(", ")}`,
      );
    }
  }
  const o = part.options;
  if (!part.target) {
    throw new JudgeConfigError(
      `reward spec "${part.kind}" needs the model: qwen-vl:<folder or Hub repo id>, e.g. qwen-vl:Qwen/Qwen2.5-VL-7B-Instruct`,
    );
  }
  const oneOf = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const v = o[key];
    if (v !== undefined && !allowed.includes(v as T)) {
      throw new JudgeConfigError(`reward spec ${key}=${v} must be one of ${allowed.join(", ")}`);
    }
    return v as T | undefined;
  };
  const mode = oneOf("mode", JUDGE_MODES);
  const device = oneOf("device", ["cpu", "cuda"] as const);
  const dtype = oneOf("dtype", ["float32", "float16"] as const);
  const image = oneOf("image", ["http", "exact"] as const);
  const cache = oneOf("cache", ["on", "off", "true", "false"] as const);
  return {
    name: part.name,
    model: part.target,
    ...(o.id !== undefined ? { id: o.id } : {}),
    mode,
    device,
    dtype,
    threads: numberOption(part, "threads"),
    batchSize: numberOption(part, "batch"),
    lengthBucket: numberOption(part, "bucket"),
    maxSessions: numberOption(part, "sessions"),
    topLogprobs: numberOption(part, "topLogprobs"),
    image:
      image === "exact"
        ? false
        : {
            format: o.format as ImageFormat | undefined,
            quality: numberOption(part, "quality"),
            maxSide: numberOption(part, "maxSide"),
          },
    cache: cache === undefined ? undefined : cache === "on" || cache === "true",
  };
}

/**
 * Builds the reward a spec describes. `mllm` and `qwen-vl` are built in; other kinds (e.g. the CLI's `shapes`) come from
 * `factories`. A single part of weight 1 is returned as is; several are composed.
 */
export async function createRewardFromSpec(
  spec: string,
  options: {
    factories?: Readonly<Record<string, RewardFactory>>;
    env?: Env;
    /** Where an HTTP judge's retry lines go. Default standard error. */
    log?: (line: string) => void;
  } = {},
): Promise<Reward> {
  const env = options.env ?? process.env;
  const log = options.log;
  const factories: Record<string, RewardFactory> = {
    mllm: (part) => createMllmJudgeReward({ ...mllmOptionsFromSpec(part, env), ...(log ? { log } : {}) }),
    "qwen-vl": (part) => createQwenVLJudgeReward(qwenVLOptionsFromSpec(part)),
    ...options.factories,
  };
  const parts = parseRewardSpec(spec);
  const built: Reward[] = [];
  try {
    for (const part of parts) {
      const factory = factories[part.kind];
      if (!factory) {
        throw new JudgeConfigError(
          `reward kind "${part.kind}" is unknown; known kinds: ${Object.keys(factories).join(", ")}`,
        );
      }
      built.push(await factory(part, { env }));
    }
  } catch (err) {
    await Promise.all(built.map((r) => r.close?.()));
    throw err;
  }
  if (parts.length === 1 && parts[0].weight === 1) return built[0];
  return composeRewards(parts.map((p, i) => ({ reward: built[i], weight: p.weight, name: p.name })));
}
