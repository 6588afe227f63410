import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeImage } from "@edit-r1/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./main.js";
import { capture, repoImage } from "./test-cli.js";

/**
 * A user's smoke test of an install with FLUX.1-Kontext-dev: `replica` writes a tiny random FLUX.1-Kontext-dev in
 * the Hub's diffusers layout, then `edit` runs on it. The adapter declares Kontext's preferred resolutions (all
 * about one megapixel), so --resolution must be one of them: 1024x1024 here (2 sampler steps on the tiny model take
 * a few seconds); a size it does not declare is refused before anything loads.
 */

let tmp: string;
let model: string;
const image = repoImage("chelsea.png");

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "flux-kontext-cli-"));
  model = join(tmp, "replica");
  const c = capture();
  expect(await main(["replica", "--adapter", "flux-kontext", "--out", model], c.io), c.err.join("\n")).toBe(
    0,
  );
  expect(c.out.join("\n")).toMatch(/22 files/);
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const edit = (out: string, resolution: string) => [
  "edit",
  "--adapter",
  "flux-kontext",
  "--model",
  model,
  "--image",
  image,
  "--instruction",
  "x",
  "--resolution",
  resolution,
  "--sample-steps",
  "2",
  "--out",
  out,
];

describe("edit-r1 on a FLUX.1-Kontext-dev replica", () => {
  it("writes the Hub layout that the adapter opens", () => {
    for (const f of [
      "model_index.json",
      "transformer/diffusion_pytorch_model.safetensors.index.json",
      "text_encoder_2/model.safetensors.index.json",
      "tokenizer/vocab.json",
      "tokenizer_2/tokenizer.json",
      "scheduler/scheduler_config.json",
    ]) {
      expect(existsSync(join(model, f)), f).toBe(true);
    }
  });

  it("edits an image at a declared Kontext resolution", async () => {
    const out = join(tmp, "edit.png");
    const c = capture();
    expect(await main(edit(out, "1024x1024"), c.io), c.err.join("\n")).toBe(0);
    const edited = await decodeImage(out);
    expect([edited.width, edited.height]).toEqual([1024, 1024]);
  }, 120_000);

  it("--attention-chunk 1 (one head's scores at a time) writes the same image as all heads at once", async () => {
    const images = [];
    for (const chunk of [[], ["--attention-chunk", "1"]]) {
      const out = join(tmp, `edit-chunk-${chunk.length}.png`);
      const c = capture();
      expect(await main([...edit(out, "512x512"), ...chunk], c.io), c.err.join("\n")).toBe(0);
      images.push(await decodeImage(out));
    }
    const [all, chunked] = images;
    let worst = 0;
    for (let i = 0; i < all!.data.length; i++)
      worst = Math.max(worst, Math.abs(all!.data[i]! - chunked!.data[i]!));
    // Each head's attention is the same computation either way; at most a rounding step of the 8-bit output.
    expect(worst).toBeLessThanOrEqual(1);
  }, 120_000);

  it("refuses a resolution the adapter does not declare", async () => {
    const out = join(tmp, "small.png");
    const c = capture();
    // A size the adapter does not declare came from --resolution: a usage error (exit 2).
    expect(await main(edit(out, "32x32"), c.io)).toBe(2);
    expect(c.err.join("\n")).toMatch(/does not generate 32×32; it supports 512×512, 672×1568/);
    expect(existsSync(out)).toBe(false);
  });
});
