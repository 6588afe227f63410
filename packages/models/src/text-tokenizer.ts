import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { EditR1Error } from "@edit-r1/engine";
import { Tokenizer } from "@huggingface/tokenizers";

/** A tokenizer folder that cannot be read, or a text that does not fit the encoder. */
export class TokenizerError extends EditR1Error {
  override readonly name = "TokenizerError";
}

export interface TokenizeOptions {
  /** Pad (with the tokenizer's pad token) or cut to exactly this many ids. */
  maxLength: number;
  /**
   * What to do with a text longer than `maxLength` ids: "truncate" keeps the leading tokens and the special
   * tokens around them (what diffusers' pipelines do, with a warning); "error" (default) throws a
   * TokenizerError saying how long the text was, so an edit is never silently made from part of an instruction.
   */
  overflow?: "error" | "truncate";
}

export interface TokenizedText {
  /** `maxLength` ids: special tokens, the text's tokens, then padding. */
  ids: Int32Array;
  /** How many ids precede the padding. */
  length: number;
  /** Whether tokens were cut off. */
  truncated: boolean;
}

/**
 * A Hugging Face tokenizer read from a repository's own files, with fixed-length padding and truncation as
 * transformers' `padding="max_length", truncation=True` does them.
 */
export class TextTokenizer {
  constructor(
    readonly tokenizer: Tokenizer,
    /** Id used for padding. */
    readonly padId: number,
    /** Where the tokenizer came from, for error messages. */
    readonly description: string,
  ) {}

  encode(text: string, options: TokenizeOptions): TokenizedText {
    const { maxLength } = options;
    if (!Number.isInteger(maxLength) || maxLength < 1) {
      throw new TokenizerError(`${this.description}: maxLength must be a positive integer, got ${maxLength}`);
    }
    let ids = this.tokenizer.encode(text).ids;
    let truncated = false;
    if (ids.length > maxLength) {
      // The special tokens are what `encode` adds around the plain tokens; keep them and cut the middle.
      const plain = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
      const before = findSubsequence(ids, plain);
      const after = ids.length - before - plain.length;
      const room = maxLength - before - after;
      if (before < 0 || room < 0) {
        throw new TokenizerError(`${this.description}: cannot truncate to ${maxLength} tokens`);
      }
      if (options.overflow !== "truncate") {
        throw new TokenizerError(
          `${this.description}: the text is ${ids.length} tokens long, more than this encoder's limit of ` +
            `${maxLength} (text starts "${text.slice(0, 60)}${text.length > 60 ? "…" : ""}"). ` +
            'Shorten the instruction, or allow truncation (overflow: "truncate") to keep only its first tokens.',
        );
      }
      ids = [...ids.slice(0, before + room), ...ids.slice(ids.length - after)];
      truncated = true;
    }
    const out = new Int32Array(maxLength).fill(this.padId);
    out.set(ids);
    return { ids: out, length: ids.length, truncated };
  }
}

function findSubsequence(haystack: readonly number[], needle: readonly number[]): number {
  for (let s = 0; s + needle.length <= haystack.length; s++) {
    if (needle.every((v, i) => haystack[s + i] === v)) return s;
  }
  return -1;
}

const exists = async (p: string) => (await stat(p).catch(() => undefined))?.isFile() ?? false;

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new TokenizerError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new TokenizerError(
      `${path} is not valid JSON (${(e as Error).message}); the file may be truncated`,
    );
  }
}

/** A special token as tokenizer_config.json / special_tokens_map.json write it: a string or {content}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/**
 * Loads the tokenizer in `dir` (a diffusers `tokenizer/` or `tokenizer_2/` folder) with
 * @huggingface/tokenizers: `tokenizer.json` when present (T5's `tokenizer_2/`), else a CLIP BPE from
 * `vocab.json` + `merges.txt` (FLUX's `tokenizer/` ships only those) described in the same tokenizer.json
 * form that transformers' CLIP converter produces. The pad token comes from `tokenizer_config.json` or
 * `special_tokens_map.json`.
 */
export async function loadTextTokenizer(dir: string): Promise<TextTokenizer> {
  const configPath = join(dir, "tokenizer_config.json");
  const config = (await exists(configPath)) ? await readJson(configPath) : {};
  const mapPath = join(dir, "special_tokens_map.json");
  const specialMap = (await exists(mapPath)) ? await readJson(mapPath) : {};
  let json: Record<string, unknown>;
  if (await exists(join(dir, "tokenizer.json"))) {
    json = await readJson(join(dir, "tokenizer.json"));
  } else if ((await exists(join(dir, "vocab.json"))) && (await exists(join(dir, "merges.txt")))) {
    const vocab = await readJson(join(dir, "vocab.json"));
    const merges = await readFile(join(dir, "merges.txt"), "utf8");
    json = clipTokenizerJson(vocab as Record<string, number>, merges, {
      bos: tokenText(config.bos_token ?? specialMap.bos_token) ?? "<|startoftext|>",
      eos: tokenText(config.eos_token ?? specialMap.eos_token) ?? "<|endoftext|>",
      unk: tokenText(config.unk_token ?? specialMap.unk_token) ?? "<|endoftext|>",
    });
  } else {
    throw new TokenizerError(
      `${dir} has neither tokenizer.json nor vocab.json + merges.txt; download the model's tokenizer folder`,
    );
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (e) {
    throw new TokenizerError(`${dir}: the tokenizer files cannot be loaded: ${(e as Error).message}`);
  }
  const padText = tokenText(config.pad_token ?? specialMap.pad_token);
  const padId = padText === undefined ? undefined : tokenizer.token_to_id(padText);
  if (padId === undefined) {
    throw new TokenizerError(
      `${dir}: no pad token id (pad_token ${JSON.stringify(padText)} in tokenizer_config.json / ` +
        "special_tokens_map.json is missing or not in the vocabulary)",
    );
  }
  return new TextTokenizer(tokenizer, padId, dir);
}

// The slow CLIPTokenizer reads only this many merges (49152 − 256 − 2), and the fast converter copies it.
const CLIP_MERGES = 49152 - 256 - 2;

/**
 * The tokenizer.json that transformers' CLIP converter derives from `vocab.json` and `merges.txt`:
 * NFC + whitespace collapsing + lower-casing, a split into letters / single digits / punctuation runs,
 * byte-level BPE with an end-of-word suffix "</w>", and BOS/EOS around each text.
 */
export function clipTokenizerJson(
  vocab: Record<string, number>,
  mergesTxt: string,
  special: { bos: string; eos: string; unk: string },
): Record<string, unknown> {
  const lines = mergesTxt.trim().split("\n");
  // The first line is a "#version" header.
  const merges = lines.slice(1, CLIP_MERGES + 1).filter((l) => l.length > 0);
  const idOf = (t: string) => {
    const id = vocab[t];
    if (typeof id !== "number")
      throw new TokenizerError(`vocab.json has no entry for the special token "${t}"`);
    return id;
  };
  const added = [...new Set([special.bos, special.eos])].map((content) => ({
    id: idOf(content),
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: "Removed",
          invert: true,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: [special.eos, idOf(special.eos)],
      cls: [special.bos, idOf(special.bos)],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: special.unk,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
