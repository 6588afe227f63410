import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Tiny tokenizer folders in the layouts of FLUX.1-Kontext-dev's `tokenizer/` (CLIP: vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json; no tokenizer.json) and `tokenizer_2/` (T5: a Unigram
 * tokenizer.json without the precompiled normaliser, which needs the real sentencepiece charsmap).
 */

const LETTERS = "abcdefghijklmnopqrstuvwxyz";

/** CLIP test vocabulary: every letter with and without "</w>", a few merged words, then BOS/EOS. */
export function tinyClipVocab(): Record<string, number> {
  const tokens: string[] = [];
  for (const c of `${LETTERS}.,!'0123456789`) tokens.push(c, `${c}</w>`);
  tokens.push("th", "the</w>", "re", "red</w>", "ca", "cat</w>");
  tokens.push("<|startoftext|>", "<|endoftext|>");
  return Object.fromEntries(tokens.map((t, i) => [t, i]));
}

export const TINY_CLIP_MERGES = [
  "#version: 0.2",
  "t h",
  "th e</w>",
  "r e",
  "re d</w>",
  "c a",
  "ca t</w>",
].join("\n");

export async function writeTinyClipTokenizer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const eot = "<|endoftext|>";
  await writeFile(join(dir, "vocab.json"), JSON.stringify(tinyClipVocab()));
  await writeFile(join(dir, "merges.txt"), `${TINY_CLIP_MERGES}\n`);
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      tokenizer_class: "CLIPTokenizer",
      bos_token: "<|startoftext|>",
      eos_token: eot,
      unk_token: eot,
      pad_token: eot,
      model_max_length: 77,
    }),
  );
  await writeFile(
    join(dir, "special_tokens_map.json"),
    JSON.stringify({ bos_token: "<|startoftext|>", eos_token: eot, unk_token: eot, pad_token: eot }),
  );
}

/** T5 test pieces: ids 0–2 are <pad>, </s>, <unk> as in T5; scores are log-probabilities. */
export const TINY_T5_PIECES: ReadonlyArray<readonly [string, number]> = [
  ["<pad>", 0],
  ["</s>", 0],
  ["<unk>", 0],
  ["▁", -2],
  ["▁a", -3],
  ["▁red", -4],
  ["▁re", -5],
  ["d", -5],
  ["▁cat", -4],
  ["▁make", -4],
  ["▁blue", -4],
  ["▁the", -3],
  ...[...LETTERS].map((c) => [c, -8] as const),
];

export function tinyT5TokenizerJson(): Record<string, unknown> {
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Replace", pattern: { Regex: " {2,}" }, content: " " }],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "WhitespaceSplit" },
        { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
      ],
    },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
      pair: [
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
        { Sequence: { id: "B", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
      ],
      special_tokens: { "</s>": { id: "</s>", ids: [1], tokens: ["</s>"] } },
    },
    decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
    model: { type: "Unigram", unk_id: 2, vocab: TINY_T5_PIECES, byte_fallback: false },
  };
}

export async function writeTinyT5Tokenizer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tinyT5TokenizerJson()));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      tokenizer_class: "T5Tokenizer",
      eos_token: "</s>",
      pad_token: "<pad>",
      unk_token: "<unk>",
      model_max_length: 512,
    }),
  );
}
