import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Rng } from "@edit-r1/core";
import {
  hubConfigJson,
  QWEN2_REPLICA_CHAT_TEMPLATE,
  qwen2ReplicaMergesTxt,
  qwen2ReplicaSpecialTokensMap,
  qwen2ReplicaTokenizerConfig,
  qwen2ReplicaTokenizerJson,
  qwen2ReplicaVocabulary,
  qwen2VLReplicaPreprocessorConfig,
  qwen25VLReplicaConfig,
  qwen25VLReplicaGenerationConfig,
  qwen25VLWeightShapes,
  replicaTensor,
  replicaWeightValues,
  writeShardedSafetensors,
} from "@edit-r1/models";
import { JudgeConfigError } from "./errors.js";
import { MAX_SCORE } from "./judge-response.js";

export interface QwenVLJudgeReplicaOptions {
  /** Seed of every weight (default 0); the same seed writes the same bytes. */
  seed?: number;
  /** Stored weight dtype: float32 (default) or bfloat16 (as released). */
  dtype?: "float32" | "bfloat16";
}

/**
 * How far the score digits' `lm_head` rows lean towards the embedding of "\n", the token that ends the
 * generation prompt, in units of a row's own random part (norm ≈ 0.5): like a real judge asked for a digit, the
 * replica then puts the six digits at the top of its distribution at the answer position, where the HTTP path's
 * top-20 logprobs see them all (at 2, one seed of eight left some out; at 4 none did). The lean is the same for
 * every digit, so the distribution among the digits, and the score, comes from the random parts and the images.
 */
export const REPLICA_DIGIT_LEAN = 4;

/**
 * Writes a tiny random-weight Qwen2.5-VL-Instruct judge into `dir` (created; files there are overwritten) in
 * the layout of Qwen/Qwen2.5-VL-7B-Instruct: config.json, generation_config.json, two safetensors shards with
 * model.safetensors.index.json (`visual.*`, `model.*`, `lm_head.weight`), tokenizer.json, tokenizer_config.json,
 * vocab.json, merges.txt, preprocessor_config.json and chat_template.json — about 0.5 MB. The vocabulary has the
 * real Qwen2.5 special tokens and the digits "0"…"9" as ids 15…24, as in the real one.
 */
export async function writeQwenVLJudgeReplica(
  dir: string,
  options: QwenVLJudgeReplicaOptions = {},
): Promise<void> {
  const seed = options.seed ?? 0;
  if (!(Number.isInteger(seed) && seed >= 0)) {
    throw new JudgeConfigError(`writeQwenVLJudgeReplica: seed must be a non-negative integer, got ${seed}`);
  }
  const dtype = options.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "bfloat16") {
    throw new JudgeConfigError(
      `writeQwenVLJudgeReplica: dtype must be "float32" or "bfloat16", got "${dtype}"`,
    );
  }
  await mkdir(dir, { recursive: true });
  const vocabulary = qwen2ReplicaVocabulary();
  const config = qwen25VLReplicaConfig(vocabulary, dtype);
  const shapes = qwen25VLWeightShapes(config);
  const values = new Map<string, Float32Array>();
  for (const [key, shape] of shapes) {
    // One stream per weight, so a weight's values depend on the seed and its name only.
    values.set(key, replicaWeightValues(key, shape, Rng.derive(seed, `qwen-vl-judge/${key}`)));
  }
  const hidden = config.hidden_size as number;
  const embed = values.get("model.embed_tokens.weight")!;
  const head = values.get("lm_head.weight")!;
  const newline = vocabulary.vocab["\u010a"]!;
  const e = embed.subarray(newline * hidden, (newline + 1) * hidden);
  const norm = Math.hypot(...e);
  for (let k = 0; k <= MAX_SCORE; k++) {
    const row = vocabulary.vocab[String(k)]!;
    // A row's random part has norm ≈ 0.5; the lean adds REPLICA_DIGIT_LEAN times that along "\n".
    for (let j = 0; j < hidden; j++) head[row * hidden + j]! += (REPLICA_DIGIT_LEAN * 0.5 * e[j]!) / norm;
  }
  await writeShardedSafetensors(
    dir,
    "model",
    "model.safetensors.index.json",
    [...shapes].map(([key, shape]) => [key, replicaTensor(values.get(key)!, shape, dtype)]),
  );
  await writeFile(join(dir, "config.json"), hubConfigJson(config));
  await writeFile(
    join(dir, "generation_config.json"),
    hubConfigJson(qwen25VLReplicaGenerationConfig(config, vocabulary)),
  );
  await writeFile(
    join(dir, "tokenizer.json"),
    JSON.stringify(qwen2ReplicaTokenizerJson(vocabulary), null, 2),
  );
  await writeFile(join(dir, "vocab.json"), JSON.stringify(vocabulary.vocab));
  await writeFile(join(dir, "merges.txt"), qwen2ReplicaMergesTxt(vocabulary));
  await writeFile(join(dir, "special_tokens_map.json"), hubConfigJson(qwen2ReplicaSpecialTokensMap()));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    hubConfigJson({
      ...qwen2ReplicaTokenizerConfig(vocabulary, true),
      processor_class: "Qwen2_5_VLProcessor",
    }),
  );
  await writeFile(
    join(dir, "preprocessor_config.json"),
    hubConfigJson({
      ...qwen2VLReplicaPreprocessorConfig(config.vision_config as Record<string, unknown>),
      image_processor_type: "Qwen2VLImageProcessor",
      processor_class: "Qwen2_5_VLProcessor",
    }),
  );
  await writeFile(
    join(dir, "chat_template.json"),
    `${JSON.stringify({ chat_template: QWEN2_REPLICA_CHAT_TEMPLATE }, null, 2)}\n`,
  );
}
