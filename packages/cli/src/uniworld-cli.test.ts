import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adapter as tiny } from "@edit-r1/adapter-tiny";
import { decodeImage } from "@edit-r1/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./main.js";
import { capture, repoImage } from "./test-cli.js";

/**
 * UniWorld from the command line on its replica (a tiny Qwen-Image-Edit-2509 with a released-form LoRA bundled):
 * edit, the shapes benchmark, one training step, and an edit with the LoRA that step wrote.
 */

let tmp: string;
let model: string;
const image = repoImage("chelsea.png");
const small = ["--adapter", "uniworld", "--sample-steps", "2"];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "uniworld-cli-"));
  model = join(tmp, "replica");
  const c = capture();
  expect(await main(["replica", "--adapter", "uniworld", "--out", model], c.io), c.err.join("\n")).toBe(0);
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe("edit-r1 --adapter uniworld on its replica", () => {
  it("edits with the bundled LoRA and with --lora-scale, and refuses an unknown --base", async () => {
    for (const extra of [[], ["--lora-scale", "0.5"]]) {
      const out = join(tmp, `edit-${extra.length}.png`);
      const c = capture();
      const args = ["edit", ...small, "--model", model, "--image", image, "--instruction", "make it purple"];
      expect(
        await main([...args, ...extra, "--resolution", "32x32", "--out", out], c.io),
        c.err.join("\n"),
      ).toBe(0);
      expect((await decodeImage(out)).width).toBe(32);
    }
    const d = capture();
    const bad = ["edit", ...small, "--base", "sd3", "--model", model, "--image", image, "--instruction", "x"];
    // A value the adapter cannot take (core's checkAdapter ConfigError) came from a flag, so the CLI reports
    // it as a usage error, exit 2, like a malformed or unknown flag; 1 is for failures while running.
    expect(await main([...bad, "--out", join(tmp, "x.png")], d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/has no base "sd3"; choose one of qwen-image-edit, flux-kontext/);
  });

  it("runs the shapes benchmark on two items and records the LoRA and its scale", async () => {
    const out = join(tmp, "bench");
    const c = capture();
    const args = ["bench", ...small, "--model", model, "--benchmark", "shapes", "--limit", "2"];
    expect(await main([...args, "--resolution", "16x16", "--out", out], c.io), c.err.join("\n")).toBe(0);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.items).toHaveLength(2);
    expect(results.protocol).toMatchObject({ adapter: "uniworld", base: "qwen-image-edit", loraScale: 1 });
  });

  it("trains one step from the bundled LoRA, then edits with the LoRA the run wrote", async () => {
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
    const d = capture();
    const edit = ["edit", ...small, "--model", model, "--image", image, "--instruction", "x", "--lora", lora];
    expect(
      await main([...edit, "--resolution", "32x32", "--out", join(tmp, "lora.png")], d.io),
      d.err.join("\n"),
    ).toBe(0);
  });
});
