import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

/** metrics.jsonl of a run folder, one record per optimizer step. */
function metrics(dir: string): Record<string, unknown>[] {
  return readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("edit-r1 with the in-process Qwen2.5-VL judge (tiny replica)", () => {
  const root = mkdtempSync(join(tmpdir(), "qwen-vl-cli-"));
  const judge = join(root, "judge");
  const config = join(root, "run.json");
  let url: string | undefined;
  let stopServer: AbortController;
  let served: Promise<number>;
  let served_out: string[];

  beforeAll(async () => {
    const c = capture();
    expect(await main(["judge", "replica", "--out", judge], c.io)).toBe(0);
    expect(c.out.join("\n")).toMatch(/qwen-vl:/);
    expect(readdirSync(judge).sort()).toEqual(
      [
        "chat_template.json",
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
      ].sort(),
    );
    // A small step: 2 prompts × 4 rollouts of the tiny model on shapes-world data, every group trained on.
    writeFileSync(
      config,
      JSON.stringify({
        promptsPerBatch: 2,
        groupSize: 4,
        trainBatchSize: 4,
        seed: 7,
        filter: { enabled: false },
      }),
    );
    const s = capture();
    served_out = s.out;
    stopServer = new AbortController();
    served = main(["judge", "serve", "--model", `qwen-vl:${judge}?id=tiny-judge`, "--port", "0"], s.io, {
      signal: stopServer.signal,
    });
    for (let i = 0; i < 3000 && !s.out.length; i++) await new Promise((r) => setTimeout(r, 10));
    url = /at (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(s.out.join("\n"))?.[1];
  });

  afterAll(async () => {
    stopServer?.abort();
    await served;
    rmSync(root, { recursive: true, force: true });
  });

  it("serves the judge under its id", async () => {
    expect(url, served_out.join("\n")).toBeDefined();
    const models = (await (await fetch(`${url}/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(["tiny-judge"]);
  });

  it("a shapes-world training step scored in process and through the judge server gets identical rewards", async () => {
    const run = async (name: string, reward: string) => {
      const out = join(root, name);
      const c = capture();
      const code = await main(
        [
          "train",
          "--adapter",
          "tiny",
          "--config",
          config,
          "--steps",
          "1",
          "--no-bench",
          "--reward",
          reward,
          "--out",
          out,
        ],
        c.io,
      );
      expect(code, c.err.join("\n")).toBe(0);
      return metrics(out);
    };
    const local = await run("in-process", `qwen-vl:${judge}`);
    const remote = await run("served", `mllm:${url}?model=tiny-judge`);
    expect(local).toHaveLength(1);
    const pick = (m: Record<string, unknown>) => [m.rewardMean, m.rewardStd, m.rewardMin, m.rewardMax];
    console.log("rewards (mean, std, min, max): in process", pick(local[0]!), "served", pick(remote[0]!));
    expect(pick(remote[0]!)).toEqual(pick(local[0]!));
    // The rewards differ between rollouts, so equal statistics are not equal constants.
    expect(local[0]!.rewardMax).not.toBe(local[0]!.rewardMin);
    // Identical rewards make identical advantages and the same update.
    expect(local[0]!.loss).toBeTypeOf("number");
    expect(local[0]!.loss).not.toBe(0);
    expect(remote[0]!.loss).toEqual(local[0]!.loss);
  });

  it("names what is wrong with a judge model entry", async () => {
    const c = capture();
    expect(await main(["judge", "serve", "--model", "qwen-vl:/nonexistent/judge"], c.io)).toBe(1);
    expect(c.err.join("\n")).toMatch(/nonexistent\/judge/);
    const d = capture();
    expect(await main(["judge", "serve", "--model", "gpt"], d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/qwen-vl:<folder or Hub repo id>/);
    const e = capture();
    expect(await main(["judge", "replica", "--out", judge], e.io)).toBe(2);
    expect(e.err.join("\n")).toMatch(/not empty/);
  });
});
