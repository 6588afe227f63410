import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Tiny tokenizer folders in the layouts of FLUX.1-Kontext-dev's `tokenizer/` (CLIP: vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json; no tokenizer.json) and `tokenizer_2/` (T5: a Unigram
 * tokenizer.json without the precompiled normaliser, which needs the real sentencepiece charsmap, with its
 * tokenizer_config.json and special_tokens_map.json), for replicas and tests.
 */

const LETTERS = "abcdefghijklmnopqrstuvwxyz";
const BOS = "<|startoftext|>";
const EOT = "<|endoftext|>";

/**
 * The replica's CLIP vocabulary: every letter, digit and a little punctuation with and without "</w>", a few
 * merged words, then BOS and EOS last (so EOS has the highest id, as in CLIP, and pooling at the argmax id of
 * configs with the legacy `eos_token_id: 2` finds it).
 */
export function clipReplicaVocab(): Record<string, number> {
  const tokens: string[] = [];
  for (const c of `${LETTERS}.,!'0123456789`) tokens.push(c, `${c}</w>`);
  tokens.push("th", "the</w>", "re", "red</w>", "ca", "cat</w>");
  tokens.push(BOS, EOT);
  return Object.fromEntries(tokens.map((t, i) => [t, i]));
}

/** merges.txt of the replica's CLIP vocabulary: the "#version" header, then one merge a line. */
export const CLIP_REPLICA_MERGES = [
  "#version: 0.2",
  "t h",
  "th e</w>",
  "r e",
  "re d</w>",
  "c a",
  "ca t</w>",
].join("\n");

const addedToken = (content: string, normalized: boolean) => ({
  content,
  lstrip: false,
  normalized,
  rstrip: false,
  single_word: false,
  special: true,
});

/** Writes a CLIPTokenizer folder (FLUX's `tokenizer/`) for the replica's vocabulary into `dir`. */
export async function writeClipReplicaTokenizer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const vocab = clipReplicaVocab();
  await writeFile(join(dir, "vocab.json"), JSON.stringify(vocab));
  await writeFile(join(dir, "merges.txt"), `${CLIP_REPLICA_MERGES}\n`);
  await writeFile(
    join(dir, "tokenizer_config.json"),
    `${JSON.stringify(
      {
        add_prefix_space: false,
        added_tokens_decoder: {
          [vocab[BOS]!]: addedToken(BOS, true),
          [vocab[EOT]!]: addedToken(EOT, false),
        },
        bos_token: BOS,
        clean_up_tokenization_spaces: true,
        do_lower_case: true,
        eos_token: EOT,
        errors: "replace",
        model_max_length: 77,
        pad_token: EOT,
        tokenizer_class: "CLIPTokenizer",
        unk_token: EOT,
      },
      null,
      2,
    )}\n`,
  );
  const special = (content: string, normalized: boolean) => {
    const { special: _, ...rest } = addedToken(content, normalized);
    return rest;
  };
  await writeFile(
    join(dir, "special_tokens_map.json"),
    `${JSON.stringify(
      {
        bos_token: special(BOS, true),
        eos_token: special(EOT, false),
        pad_token: EOT,
        unk_token: special(EOT, false),
      },
      null,
      2,
    )}\n`,
  );
}

/** The replica's T5 pieces: ids 0–2 are <pad>, </s>, <unk> as in T5; scores are log-probabilities. */
export const T5_REPLICA_PIECES: ReadonlyArray<readonly [string, number]> = [
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

/** A T5TokenizerFast tokenizer.json (Unigram, Metaspace, "</s>" appended) over `T5_REPLICA_PIECES`. */
export function t5ReplicaTokenizerJson(): Record<string, unknown> {
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
    model: { type: "Unigram", unk_id: 2, vocab: T5_REPLICA_PIECES, byte_fallback: false },
  };
}

/** Writes a T5TokenizerFast folder (FLUX's `tokenizer_2/`, without the sentencepiece `spiece.model`) into `dir`. */
export async function writeT5ReplicaTokenizer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(t5ReplicaTokenizerJson()));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    `${JSON.stringify(
      {
        additional_special_tokens: [],
        clean_up_tokenization_spaces: true,
        eos_token: "</s>",
        extra_ids: 0,
        legacy: true,
        model_max_length: 512,
        pad_token: "<pad>",
        tokenizer_class: "T5Tokenizer",
        unk_token: "<unk>",
      },
      null,
      2,
    )}\n`,
  );
  await writeFile(
    join(dir, "special_tokens_map.json"),
    `${JSON.stringify({ eos_token: "</s>", pad_token: "<pad>", unk_token: "<unk>" }, null, 2)}\n`,
  );
}
