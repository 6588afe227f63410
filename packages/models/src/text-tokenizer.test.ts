import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  clipReplicaVocab,
  T5_REPLICA_PIECES,
  writeClipReplicaTokenizer,
  writeT5ReplicaTokenizer,
} from "./clip-t5-replica-tokenizers.js";
import { loadTextTokenizer, TokenizerError } from "./text-tokenizer.js";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "tokenizer-"));
  await writeClipReplicaTokenizer(join(tmp, "clip"));
  await writeT5ReplicaTokenizer(join(tmp, "t5"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("CLIP tokenizer from vocab.json + merges.txt", () => {
  const v = clipReplicaVocab();
  const bos = v["<|startoftext|>"]!;
  const eos = v["<|endoftext|>"]!;

  it("lower-cases, splits words, applies the merges with </w> and wraps in BOS/EOS, padding with EOS", async () => {
    const tok = await loadTextTokenizer(join(tmp, "clip"));
    const out = tok.encode("The  RED cat!", { maxLength: 10 });
    // "the" → t h e</w> → th e</w> → the</w>; "red" likewise; "cat" → ca t</w> → cat</w>; "!" alone.
    const expected = [bos, v["the</w>"]!, v["red</w>"]!, v["cat</w>"]!, v["!</w>"]!, eos];
    expect([...out.ids]).toEqual([...expected, eos, eos, eos, eos]);
    expect(out.length).toBe(6);
    expect(out.truncated).toBe(false);
  });

  it("leaves words without merges as single characters and splits digits one by one", async () => {
    const tok = await loadTextTokenizer(join(tmp, "clip"));
    const out = tok.encode("dog 42", { maxLength: 8 });
    expect([...out.ids.slice(0, out.length)]).toEqual([
      bos,
      v.d!,
      v.o!,
      v["g</w>"]!,
      v["4</w>"]!,
      v["2</w>"]!,
      eos,
    ]);
  });

  it("truncates keeping BOS and EOS when asked, and otherwise says how long the text was", async () => {
    const tok = await loadTextTokenizer(join(tmp, "clip"));
    const t = tok.encode("the red cat the red cat", { maxLength: 5, overflow: "truncate" });
    expect([...t.ids]).toEqual([bos, v["the</w>"]!, v["red</w>"]!, v["cat</w>"]!, eos]);
    expect(t.truncated).toBe(true);
    expect(() => tok.encode("the red cat the red cat", { maxLength: 5 })).toThrow(
      /8 tokens long.*limit of 5/,
    );
    expect(() => tok.encode("the red cat the red cat", { maxLength: 5 })).toThrow(TokenizerError);
  });
});

describe("T5 tokenizer from tokenizer.json", () => {
  const id = (piece: string) => T5_REPLICA_PIECES.findIndex(([p]) => p === piece);

  it("segments with the highest-scoring Unigram pieces, appends </s> and pads with <pad> = 0", async () => {
    const tok = await loadTextTokenizer(join(tmp, "t5"));
    const out = tok.encode("make the cat red", { maxLength: 8 });
    // "▁red" (−4) beats "▁re" + "d" (−10).
    expect([...out.ids]).toEqual([id("▁make"), id("▁the"), id("▁cat"), id("▁red"), 1, 0, 0, 0]);
    expect(out.length).toBe(5);
  });

  it("keeps </s> when truncating", async () => {
    const tok = await loadTextTokenizer(join(tmp, "t5"));
    const out = tok.encode("make the cat red", { maxLength: 3, overflow: "truncate" });
    expect([...out.ids]).toEqual([id("▁make"), id("▁the"), 1]);
  });
});

describe("loadTextTokenizer errors", () => {
  it("names the folder when there are no tokenizer files", async () => {
    await expect(loadTextTokenizer(join(tmp, "nowhere"))).rejects.toThrow(
      /neither tokenizer.json nor vocab.json/,
    );
  });

  it("says which file is not JSON", async () => {
    const dir = join(tmp, "broken");
    await writeT5ReplicaTokenizer(dir);
    await writeFile(join(dir, "tokenizer.json"), "{ not json");
    await expect(loadTextTokenizer(dir)).rejects.toThrow(/tokenizer.json is not valid JSON/);
  });
});
