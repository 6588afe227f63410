import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adapter as tiny } from "@edit-r1/adapter-tiny";
import { decodeImage } from "@edit-r1/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./main.js";
import { capture, repoImage } from "./test-cli.js";

/**
 * A user's smoke test of an install, command by command: `replica` writes a tiny random Qwen-Image-Edit-2509 in
 * the Hub layout, then `edit`, `bench --benchmark shapes --limit 2`, `train --steps 1` and an edit with the
 * trained LoRA run on it (small sizes and 2 sampler steps keep it fast).
 */

let tmp: string;
let model: string;
const image = repoImage("chelsea.png");

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "qwen-cli-"));
  model = join(tmp, "replica");
  const c = capture();
  expect(await main(["replica", "--adapter", "qwen-image-edit", "--out", model], c.io)).toBe(0);
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const small = ["--adapter", "qwen-image-edit", "--sample-steps", "2"];

describe("edit-r1 on a Qwen-Image-Edit replica", () => {
  it("edits an image at a given size", async () => {
    const out = join(tmp, "edit.png");
    const c = capture();
    const args = ["edit", ...small, "--model", model, "--image", image, "--instruction", "make it purple"];
    expect(await main([...args, "--resolution", "32x32", "--out", out], c.io), c.err.join("\n")).toBe(0);
    const edited = await decodeImage(out);
    expect([edited.width, edited.height]).toEqual([32, 32]);
  });

  it("--attention-chunk 1 (one head's scores at a time) writes the same image as all heads at once", async () => {
    const args = ["edit", ...small, "--model", model, "--image", image, "--instruction", "make it purple"];
    const images = [];
    for (const chunk of [[], ["--attention-chunk", "1"]]) {
      const out = join(tmp, `edit-chunk-${chunk.length}.png`);
      const c = capture();
      expect(
        await main([...args, ...chunk, "--resolution", "32x32", "--out", out], c.io),
        c.err.join("\n"),
      ).toBe(0);
      images.push(await decodeImage(out));
    }
    const [all, chunked] = images;
    let worst = 0;
    for (let i = 0; i < all!.data.length; i++)
      worst = Math.max(worst, Math.abs(all!.data[i]! - chunked!.data[i]!));
    expect(worst).toBeLessThanOrEqual(1);
    const c = capture();
    expect(
      await main(
        [
          "edit",
          "--adapter",
          "tiny",
          "--image",
          image,
          "--instruction",
          "x",
          "--attention-chunk",
          "1",
          "--out",
          join(tmp, "never.png"),
        ],
        c.io,
      ),
    ).not.toBe(0);
    expect(c.err.join("\n")).toMatch(/cannot chunk its attention by heads; drop --attention-chunk/);
  });

  it("edits with two source images (--image repeated), and refuses more than the adapter takes", async () => {
    const out = join(tmp, "edit-two.png");
    const second = repoImage("coffee.png");
    const args = [
      "edit",
      ...small,
      "--model",
      model,
      "--image",
      image,
      "--image",
      second,
      "--instruction",
      "merge",
    ];
    const c = capture();
    expect(await main([...args, "--resolution", "32x32", "--out", out], c.io), c.err.join("\n")).toBe(0);
    expect((await decodeImage(out)).width).toBe(32);
    const d = capture();
    const four = [...args, "--image", image, "--image", image, "--out", join(tmp, "four.png")];
    expect(await main(four, d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/--image was given 4 times; adapter "qwen-image-edit" takes at most 3/);
  });

  it("runs the shapes benchmark on two items", async () => {
    const out = join(tmp, "bench");
    const c = capture();
    const args = ["bench", ...small, "--model", model, "--benchmark", "shapes", "--limit", "2"];
    expect(await main([...args, "--resolution", "16x16", "--out", out], c.io), c.err.join("\n")).toBe(0);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.items).toHaveLength(2);
    expect(results.items.every((i: { error?: string }) => i.error === undefined)).toBe(true);
    expect(results.protocol).toMatchObject({ adapter: "qwen-image-edit", variant: "edit-plus", steps: 2 });
  });

  it("trains one step and edits with the LoRA it wrote", async () => {
    const data = await tiny.trainDefaults!.writeTrainData!(join(tmp, "data"));
    const config = join(tmp, "small.json");
    writeFileSync(
      config,
      JSON.stringify({ groupSize: 2, promptsPerBatch: 1, rolloutBatches: 1, trainBatchSize: 2 }),
    );
    const run = join(tmp, "run");
    const c = capture();
    const args = ["train", ...small, "--model", model, "--data", data, "--reward", "shapes", "--steps", "1"];
    const code = await main(
      [...args, "--no-bench", "--resolution", "16x16", "--config", config, "--out", run],
      c.io,
    );
    expect(code, c.err.join("\n")).toBe(0);
    const lora = join(run, "lora");
    expect(existsSync(join(lora, "adapter_model.safetensors"))).toBe(true);
    const out = join(tmp, "edit-lora.png");
    const d = capture();
    const edit = ["edit", ...small, "--model", model, "--image", image, "--instruction", "x", "--lora", lora];
    expect(await main([...edit, "--resolution", "32x32", "--out", out], d.io), d.err.join("\n")).toBe(0);
  });
});
