import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RewardInput } from "@edit-r1/core";
import { closeDefaultRuntime } from "@edit-r1/engine";
import {
  openSafetensorsWeights,
  parseQwen2VLProcessorConfig,
  parseQwen25VLConfig,
  qwen2VLResizeAndPatch,
  type TextTokenizer,
} from "@edit-r1/models";
import { generateEdits } from "@edit-r1/shapes";
import { fixturesOfKind, readAllFloat32, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatCompletionResponse } from "./chat-types.js";
import { encodeImageDataUrl } from "./image-data-url.js";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createMllmJudgeReward, type MllmJudgeRaw } from "./mllm-judge-reward.js";
import { parseChatTemplate } from "./qwen-vl-chat.js";
import { createQwenVLJudge, openQwenVLJudge, type QwenVLJudge, rankLogits } from "./qwen-vl-judge.js";
import {
  createQwenVLJudgeReward,
  judgeMessages,
  type QwenVLJudgeRaw,
  qwenVLJudgeModel,
} from "./qwen-vl-judge-reward.js";
import { writeQwenVLJudgeReplica } from "./qwen-vl-replica.js";
import { createRewardFromSpec } from "./reward-spec.js";
import { createShapesJudgeReward } from "./shapes-judge.js";
import { renderTemplate, SCORE_LOGIT_TEMPLATE } from "./templates.js";

/**
 * Relative L2 allowed between our logits and lm_head applied on the host to the reference hidden state: the
 * hidden state itself is off the fp32 reference by ~1e-6 (models' encoder test), and lm_head is one fp32 dot
 * product per token.
 */
const FP32_PARITY = 1e-5;

afterAll(async () => {
  await closeDefaultRuntime();
});

describe("lm_head at the answer position vs the transformers fixture", () => {
  const fixtures = fixturesOfKind("qwen2_5_vl-encoder");
  it("finds the qwen2_5_vl-encoder fixture (with lm_head.weight)", () => {
    expect(fixtures.length).toBeGreaterThan(0);
  });

  for (const fixture of fixtures) {
    it(`${fixture.name}: the judge's forward gives lm_head(hidden_states[-1]) at the last token to fp32 rounding`, async () => {
      const io = await readFixtureIo(fixture);
      const weights = await readAllFloat32(fixture.weightsPath);
      const config = parseQwen25VLConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
      const ids = io.get("in.input_ids")!;
      const [batch, length] = ids.shape as [number, number];
      expect(batch).toBe(1);
      // The fixture's images go through the processor (already at their smart_resize sizes: no resize).
      const processor = parseQwen2VLProcessorConfig({});
      const patches = [0, 1].map((k) => {
        const u8 = io.get(`in.image${k}_u8`)!;
        const [h, w] = u8.shape as [number, number];
        return qwen2VLResizeAndPatch({ width: w, height: h, data: Uint8Array.from(u8.data) }, processor);
      });
      const pixels = io.get("in.pixel_values")!.data;
      const ours = Float32Array.from(patches.flatMap((p) => [...p.pixelValues]));
      expect(relativeL2(ours, pixels)).toBe(0);
      // The forward needs no tokenizer; the judge only asks it for the special and digit ids.
      const special: Record<string, number> = { "<|image_pad|>": config.imageTokenId };
      for (let k = 0; k <= 5; k++) special[String(k)] = 15 + k;
      const tokenizer = {
        tokenizer: { token_to_id: (t: string) => special[t] },
        padId: 0,
        description: "fixture ids",
      } as unknown as TextTokenizer;
      const judge = createQwenVLJudge({
        config,
        weights: await openSafetensorsWeights(fixture.weightsPath),
        tokenizer,
        processor,
        chatTemplate: parseChatTemplate("{{ messages[0]['content'] }}"),
        description: fixture.name,
      });
      try {
        const row = Int32Array.from(ids.data);
        const [out] = await judge.forward([{ ids: row, patches }]);
        const hidden = io.get("out.hidden_states_last")!.data;
        const head = weights.get("lm_head.weight")!;
        const d = config.hiddenSize;
        const host = (position: number) =>
          Float64Array.from({ length: config.vocabSize }, (_, v) => {
            let s = 0;
            for (let j = 0; j < d; j++) s += head.data[v * d + j]! * hidden[position * d + j]!;
            return s;
          });
        const want = host(length - 1);
        const err = relativeL2(out!.logits, want);
        const offByOne = relativeL2(out!.logits, host(length - 2));
        const digits = judge.scoreTokenIds.map((id) => [out!.logits[id]!, want[id]!]);
        console.log(
          `${fixture.name}: logits at the answer position, relative L2 to host lm_head(reference hidden) = ` +
            `${err.toExponential(2)} (bound ${FP32_PARITY}); at the token before it: ${offByOne.toExponential(2)}; ` +
            `score-token logits (ours, host): ${JSON.stringify(digits)}`,
        );
        expect(out!.logits.length).toBe(config.vocabSize);
        expect(err).toBeLessThan(FP32_PARITY);
        expect(offByOne).toBeGreaterThan(1e-2);
        // Right padding (a row padded to the length bucket, and the same row in a batch of two with a longer one)
        // leaves the answer position's logits as they were.
        const padded = createQwenVLJudge(
          {
            config,
            weights: await openSafetensorsWeights(fixture.weightsPath),
            tokenizer,
            processor,
            chatTemplate: parseChatTemplate("{{ messages[0]['content'] }}"),
            description: fixture.name,
          },
          { batchSize: 2, lengthBucket: 16 },
        );
        try {
          const longer = Int32Array.from([...ids.data, 7, 8, 9, 10, 11]);
          const [a, b] = await padded.forward([
            { ids: row, patches },
            { ids: longer, patches },
          ]);
          expect(padded.stats().forwards).toBe(1);
          expect(relativeL2(a!.logits, out!.logits)).toBeLessThan(1e-6);
          expect(relativeL2(b!.logits, a!.logits)).toBeGreaterThan(1e-3);
        } finally {
          await padded.close();
        }
      } finally {
        await judge.close();
      }
    });
  }
});

describe("the Qwen2.5-VL judge on a tiny replica", () => {
  let dir: string;
  let judge: QwenVLJudge;
  let server: JudgeServer;
  const edits = generateEdits({ seed: 11, count: 6, split: "train" });
  const batch: RewardInput[] = edits.map((e, i) => ({
    key: e.key,
    instruction: e.instruction,
    requirement: e.requirement,
    source: e.source,
    edited: i % 2 === 0 ? e.target : e.source,
  }));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "qwen-vl-judge-"));
    await writeQwenVLJudgeReplica(dir, { seed: 3 });
    judge = await openQwenVLJudge(dir, { id: "tiny-qwen-vl" });
    server = await startJudgeServer({ models: [qwenVLJudgeModel(judge, { close: false })] });
  });
  afterAll(async () => {
    await server?.close();
    await judge?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("renders the HTTP judge's request with the model's chat template and widens each image's pad", () => {
    const text = renderTemplate(SCORE_LOGIT_TEMPLATE, batch[0]!);
    const item = { messages: judgeMessages(text), images: [batch[0]!.source, batch[0]!.edited] };
    const p = judge.prepare(item);
    const block = "<|vision_start|><|image_pad|><|vision_end|>";
    expect(p.text).toBe(
      `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n${block}${block}${text}` +
        "<|im_end|>\n<|im_start|>assistant\n",
    );
    const own = judge.prepare({ messages: judgeMessages(text, "Be strict."), images: item.images });
    expect(own.text!.startsWith("<|im_start|>system\nBe strict.<|im_end|>\n<|im_start|>user\n")).toBe(true);
    // Each <|image_pad|> became t·h·w/4 pads of its image's grid; the prompt ends with the "\n" after assistant.
    const pads = [...p.ids].filter((id) => id === judge.config.imageTokenId).length;
    expect(pads).toBe(p.patches.reduce((n, q) => n + (q.grid[0] * q.grid[1] * q.grid[2]) / 4, 0));
    expect(judge.tokenText(p.ids[p.ids.length - 1]!)).toBe("\n");
    expect(judge.scoreTokenIds).toEqual([15, 16, 17, 18, 19, 20]);
    expect(() => judge.prepare({ messages: item.messages, images: [batch[0]!.source] })).toThrow(
      /2 image placeholder\(s\) but the request carries 1/,
    );
  });

  it("scores Σ k·p_k / 5 from the six score logits, caches by (template, images, instruction), and reacts to the images", async () => {
    const reward = await createQwenVLJudgeReward({ model: judge });
    const out = await reward.score(batch);
    for (const o of out) {
      const raw = o.raw as QwenVLJudgeRaw;
      const z = raw.logits.reduce((s, l) => s + Math.exp(l - Math.max(...raw.logits)), 0);
      const p = raw.logits.map((l) => Math.exp(l - Math.max(...raw.logits)) / z);
      expect(raw.distribution).toEqual(p.map((v) => expect.closeTo(v, 12)));
      expect(o.score).toBeCloseTo(
        p.reduce((s, v, k) => s + (k * v) / 5, 0),
        12,
      );
      expect(o.components["qwen-vl"]).toBe(o.score);
      expect(raw.candidates!.length).toBe(20);
      expect(raw.cached).toBe(false);
      expect(raw.model).toBe("tiny-qwen-vl");
    }
    expect(new Set(out.map((o) => o.score)).size).toBe(out.length);
    const again = await reward.score(batch);
    expect(again.map((o) => o.score)).toEqual(out.map((o) => o.score));
    expect(again.every((o) => (o.raw as QwenVLJudgeRaw).cached)).toBe(true);
    expect(reward.stats()).toMatchObject({ items: 12, scored: 6, cacheHits: 6 });
    // Another instruction is another prompt.
    const other = await reward.score([{ ...batch[0]!, instruction: `${batch[0]!.instruction} now` }]);
    expect(other[0]!.score).not.toBe(out[0]!.score);
    await reward.close?.();
  });

  it("batches items into one forward with the same logits as one at a time", async () => {
    const batched = await openQwenVLJudge(dir, { batchSize: 3 });
    try {
      const mixed = batch.map((b, i) => ({ ...b, instruction: `${b.instruction}${" please".repeat(i)}` }));
      const one = await createQwenVLJudgeReward({ model: judge, cache: false });
      const three = await createQwenVLJudgeReward({ model: batched, cache: false });
      const a = await one.score(mixed);
      const b = await three.score(mixed);
      expect(batched.stats().forwards).toBe(2);
      const errors = a.map((o, i) => {
        const la = (o.raw as QwenVLJudgeRaw).logits;
        const lb = (b[i]!.raw as QwenVLJudgeRaw).logits;
        expect(b[i]!.score).toBeCloseTo(o.score, 6);
        return relativeL2(lb, la);
      });
      console.log(
        `batch of 3 vs one at a time: score-logit relative L2 max ${Math.max(...errors).toExponential(2)}`,
      );
      for (const e of errors) expect(e).toBeLessThan(1e-5);
    } finally {
      await batched.close();
    }
  });

  it("serves the same top_logprobs over HTTP as the in-process call", async () => {
    const item = batch[1]!;
    const text = renderTemplate(SCORE_LOGIT_TEMPLATE, item);
    const [source, edited] = await Promise.all([
      encodeImageDataUrl(item.source, { format: "png" }),
      encodeImageDataUrl(item.edited, { format: "png" }),
    ]);
    const response = await fetch(`${server.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "tiny-qwen-vl",
        messages: [
          {
            role: "user",
            content: [
              { type: "image_url", image_url: { url: source } },
              { type: "image_url", image_url: { url: edited } },
              { type: "text", text },
            ],
          },
        ],
        max_tokens: 1,
        temperature: 0,
        logprobs: true,
        top_logprobs: 7,
      }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as ChatCompletionResponse;
    const entry = body.choices[0]!.logprobs!.content![0]!;
    // PNG is lossless: the served judge sees the exact pixels.
    const [local] = await judge.logits([
      { messages: judgeMessages(text), images: [item.source, item.edited] },
    ]);
    const { top } = rankLogits(local!.logits, 7, (id) => judge.tokenText(id));
    expect(entry.top_logprobs.map((c) => [c.token, c.logprob])).toEqual(top.map((c) => [c.token, c.logprob]));
    expect(body.choices[0]!.message.content).toBe(top[0]!.token);
    expect(entry.logprob).toBe(top[0]!.logprob);
    expect(body.usage!.prompt_tokens).toBe(local!.promptTokens);
  });

  it("gives identical rewards in process and through the judge server (same JPEG route)", async () => {
    const local = await createQwenVLJudgeReward({ model: judge, cache: false });
    const remote = createMllmJudgeReward({ url: server.url, model: "tiny-qwen-vl", cache: false });
    const a = await local.score(batch);
    const b = await remote.score(batch);
    for (const [i, o] of a.entries()) {
      const raw = o.raw as QwenVLJudgeRaw;
      // The replica's digits lead its distribution, so the HTTP path's top 20 holds all six.
      expect(raw.candidates!.filter((c) => /^[0-5]$/.test(c.token)).length).toBe(6);
      expect(b[i]!.score).toBe(o.score);
      expect((b[i]!.raw as MllmJudgeRaw).candidates).toEqual(raw.candidates);
      expect((b[i]!.raw as MllmJudgeRaw).distribution).toEqual(raw.distribution);
    }
    // The round trip matters: exact pixels give other scores.
    const exact = await createQwenVLJudgeReward({ model: judge, cache: false, image: false });
    const c = await exact.score(batch);
    expect(c.some((o, i) => o.score !== a[i]!.score)).toBe(true);
  });

  it("composes from a spec with the other rewards, and refuses what it cannot do", async () => {
    const reward = await createRewardFromSpec(`0.5*qwen-vl:${dir}?batch=2,0.5*shapes`, {
      factories: { shapes: () => createShapesJudgeReward() },
    });
    const out = await reward.score(batch.slice(0, 2));
    const alone = await createQwenVLJudgeReward({ model: judge });
    const judged = await alone.score(batch.slice(0, 2));
    const shapes = await createShapesJudgeReward().score(batch.slice(0, 2));
    out.forEach((o, i) => {
      expect(o.components["qwen-vl"]).toBe(judged[i]!.score);
      expect(o.score).toBeCloseTo((judged[i]!.score + shapes[i]!.score) / 2, 12);
    });
    await reward.close?.();
    await expect(createRewardFromSpec(`qwen-vl:${dir}?device=tpu`)).rejects.toThrow(/device=tpu/);
    await expect(createRewardFromSpec(`qwen-vl:${dir}?url=x`)).rejects.toThrow(/unknown for qwen-vl/);
    await expect(createRewardFromSpec("qwen-vl")).rejects.toThrow(/needs the model/);
    await expect(createQwenVLJudgeReward({ model: judge, mode: "yes-no" })).rejects.toThrow(/"Yes" and "No"/);
    await expect(createQwenVLJudgeReward({ model: judge, mode: "cot-score-logit" })).rejects.toThrow(
      /needs generated reasoning/,
    );
    await expect(openQwenVLJudge(join(dir, "missing"))).rejects.toThrow(/does not exist/);
  });
});
