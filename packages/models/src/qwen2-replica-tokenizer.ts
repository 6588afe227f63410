/**
 * The tokenizer files of tiny Qwen2 / Qwen2.5-VL replicas (the Qwen-Image-Edit text encoder, the Qwen2.5-VL
 * judge): a small byte-level BPE of our own (the 256 byte tokens, then a few merges) plus the Qwen2.5 added
 * tokens, in the formats the real repositories write — tokenizer.json (Qwen2TokenizerFast, what
 * @huggingface/tokenizers reads), vocab.json + merges.txt (the slow Qwen2Tokenizer), tokenizer_config.json,
 * special_tokens_map.json and a chat template. The byte tokens come in GPT-2's order, so the digits "0"…"9"
 * are ids 15…24 as in the real Qwen vocabulary.
 */

/** The Qwen2.5 added tokens, in their id order (the real ids are 151643 + index), and whether each is special. */
const ADDED_TOKENS: readonly (readonly [string, boolean])[] = [
  ["<|endoftext|>", true],
  ["<|im_start|>", true],
  ["<|im_end|>", true],
  ["<|object_ref_start|>", true],
  ["<|object_ref_end|>", true],
  ["<|box_start|>", true],
  ["<|box_end|>", true],
  ["<|quad_start|>", true],
  ["<|quad_end|>", true],
  ["<|vision_start|>", true],
  ["<|vision_end|>", true],
  ["<|vision_pad|>", true],
  ["<|image_pad|>", true],
  ["<|video_pad|>", true],
  ["<tool_call>", false],
  ["</tool_call>", false],
  ["<|fim_prefix|>", false],
  ["<|fim_middle|>", false],
  ["<|fim_suffix|>", false],
  ["<|fim_pad|>", false],
  ["<|repo_name|>", false],
  ["<|file_sep|>", false],
];

/**
 * The split Qwen2's pre-tokenizer makes before the byte-level mapping (contractions, letter runs, single
 * digits, punctuation runs, newlines, spaces): part of the tokenizer format, so it is the real one.
 */
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * Words the merges build, left to right (a leading space is "Ġ", a newline "Ċ"): the template's own words,
 * so an encoded prompt mixes merged and byte tokens.
 */
const MERGED_WORDS = [
  "Ġthe",
  "Ġa",
  "in",
  "er",
  "on",
  "Ġimage",
  "Ġmake",
  "Ġsky",
  "Ġred",
  "Ġblue",
  "Picture",
  "user",
  "system",
  "assistant",
  "ĊĊ",
];

/** GPT-2's reversible byte → printable character map that byte-level BPE vocabularies are written in. */
export function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const chars = new Array<string>(256);
  for (const b of printable) chars[b] = String.fromCharCode(b);
  let extra = 0;
  for (let b = 0; b < 256; b++) if (chars[b] === undefined) chars[b] = String.fromCharCode(256 + extra++);
  // The vocabulary lists the printable bytes first, then the remapped ones, as GPT-2 and Qwen do.
  const order = [
    ...printable,
    ...Array.from({ length: 256 }, (_, b) => b).filter((b) => !printable.includes(b)),
  ];
  return order.map((b) => chars[b]!);
}

export interface ReplicaVocabulary {
  /** BPE tokens → id (byte tokens, then merged tokens). */
  vocab: Record<string, number>;
  /** Merges in priority order, as "left right". */
  merges: string[];
  /** Added token → id, in id order after the BPE tokens. */
  added: Record<string, number>;
  /** Ids of the added tokens that are special. */
  special: ReadonlySet<string>;
  /** Number of ids in use (BPE + added). */
  size: number;
}

export function qwen2ReplicaVocabulary(): ReplicaVocabulary {
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const c of byteLevelAlphabet()) vocab[c] = next++;
  const merges: string[] = [];
  for (const word of MERGED_WORDS) {
    const chars = [...word];
    let left = chars[0]!;
    for (const c of chars.slice(1)) {
      const merged = left + c;
      if (vocab[merged] === undefined) {
        merges.push(`${left} ${c}`);
        vocab[merged] = next++;
      }
      left = merged;
    }
  }
  const added: Record<string, number> = {};
  for (const [content] of ADDED_TOKENS) added[content] = next++;
  return {
    vocab,
    merges,
    added,
    special: new Set(ADDED_TOKENS.filter(([, s]) => s).map(([c]) => c)),
    size: next,
  };
}

const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };

/** The tokenizer.json of the replica's processor/ folder (Qwen2TokenizerFast's format). */
export function qwen2ReplicaTokenizerJson(v: ReplicaVocabulary): Record<string, unknown> {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: Object.entries(v.added).map(([content, id]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: v.special.has(content),
    })),
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_SPLIT }, behavior: "Isolated", invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: v.vocab,
      merges: v.merges,
    },
  };
}

const SPECIAL_TOKEN_LIST = ADDED_TOKENS.filter(([c, s]) => s && c !== "<|endoftext|>").map(([c]) => c);

const addedEntry = (content: string) => ({
  content,
  lstrip: false,
  normalized: false,
  rstrip: false,
  single_word: false,
});

/** tokenizer_config.json (both folders; the processor's also names its processor class). */
export function qwen2ReplicaTokenizerConfig(
  v: ReplicaVocabulary,
  processor: boolean,
): Record<string, unknown> {
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(
      Object.entries(v.added).map(([content, id]) => [
        String(id),
        { ...addedEntry(content), special: v.special.has(content) },
      ]),
    ),
    additional_special_tokens: SPECIAL_TOKEN_LIST,
    bos_token: null,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    errors: "replace",
    extra_special_tokens: {},
    model_max_length: 131072,
    pad_token: "<|endoftext|>",
    ...(processor ? { processor_class: "Qwen2VLProcessor" } : {}),
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null,
  };
}

export function qwen2ReplicaSpecialTokensMap(): Record<string, unknown> {
  return {
    additional_special_tokens: SPECIAL_TOKEN_LIST,
    eos_token: addedEntry("<|im_end|>"),
    pad_token: addedEntry("<|endoftext|>"),
  };
}

/** merges.txt as the slow tokenizer reads it. */
export function qwen2ReplicaMergesTxt(v: ReplicaVocabulary): string {
  return `#version: 0.2\n${v.merges.join("\n")}\n`;
}

/**
 * A chat template (written for the replica) that renders messages the way Qwen2-VL's does: an image or video
 * entry becomes <|vision_start|><|image_pad|><|vision_end|> (or <|video_pad|>), text is copied, each message is
 * wrapped in <|im_start|>role\n … <|im_end|>\n, and a default system message comes first when none is given.
 * No newline follows a block tag, so it renders the same with or without Jinja's trim_blocks.
 */
export const QWEN2_REPLICA_CHAT_TEMPLATE =
  "{% for message in messages %}" +
  "{% if loop.first and message['role'] != 'system' %}" +
  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
  "{% endif %}" +
  "<|im_start|>{{ message['role'] }}\n" +
  "{% if message['content'] is string %}{{ message['content'] }}" +
  "{% else %}{% for part in message['content'] %}" +
  "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>" +
  "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>" +
  "{% elif 'text' in part %}{{ part['text'] }}" +
  "{% endif %}{% endfor %}{% endif %}" +
  "<|im_end|>\n" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
