import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HubError } from "./hub-error.js";
import { resolveSafetensorsShards, resolveSafetensorsWeights } from "./safetensors-shards.js";
import { makeFakeCache } from "./test-fake-cache.js";

let root: string;
let cacheDir: string;
let snapshot: string;
const index = (shards: string[]) =>
  JSON.stringify({
    metadata: { total_size: 3 },
    weight_map: Object.fromEntries(shards.map((s, i) => [`layer.${i}.weight`, s])),
  });

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hub-shards-"));
  cacheDir = join(root, "cache");
  snapshot = await makeFakeCache(cacheDir, {
    "transformer/diffusion_pytorch_model.safetensors.index.json": index([
      "diffusion_pytorch_model-00001-of-00002.safetensors",
      "diffusion_pytorch_model-00002-of-00002.safetensors",
      "diffusion_pytorch_model-00001-of-00002.safetensors",
    ]),
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors": "s1",
    "transformer/diffusion_pytorch_model-00002-of-00002.safetensors": "s2",
    "text_encoder/model.safetensors.index.json": index([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]),
    "text_encoder/model-00001-of-00003.safetensors": "t1",
    "text_encoder/model-00003-of-00003.safetensors": null,
    "vae/diffusion_pytorch_model.safetensors": "v",
    "bad/model.safetensors.index.json": '{"weight_map":{"x":"../vae/diffusion_pytorch_model.safetensors"}}',
    "empty/config.json": "{}",
  });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("sharded weights", () => {
  it("reads an index into its distinct shard files and tensor map", async () => {
    const w = await resolveSafetensorsShards(
      "org/model",
      "transformer/diffusion_pytorch_model.safetensors.index.json",
      {
        cacheDir,
      },
    );
    const shard = (n: number) =>
      join(snapshot, "transformer", `diffusion_pytorch_model-0000${n}-of-00002.safetensors`);
    expect(w.files).toEqual([shard(1), shard(2)]);
    expect(w.index).toBe(join(snapshot, "transformer", "diffusion_pytorch_model.safetensors.index.json"));
    expect(w.weightMap?.["layer.1.weight"]).toBe(shard(2));
  });

  it("names every missing shard (absent or interrupted) and how to fetch them", async () => {
    const err = await resolveSafetensorsShards("org/model", "text_encoder/model.safetensors.index.json", {
      cacheDir,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).code).toBe("missing-shard");
    expect((err as Error).message).toContain(
      "2 of 3 weight shards listed in text_encoder/model.safetensors.index.json are missing: text_encoder/model-00002-of-00003.safetensors, text_encoder/model-00003-of-00003.safetensors",
    );
    expect((err as Error).message).toContain("edit-r1 download org/model --include 'text_encoder/*'");
  });

  it("refuses an index that points outside its folder", async () => {
    await expect(
      resolveSafetensorsShards("org/model", "bad/model.safetensors.index.json", { cacheDir }),
    ).rejects.toThrow(/not a file inside bad/);
  });

  it("finds a component's weights whether single-file or sharded", async () => {
    expect((await resolveSafetensorsWeights("org/model", "vae", { cacheDir })).files).toEqual([
      join(snapshot, "vae", "diffusion_pytorch_model.safetensors"),
    ]);
    expect((await resolveSafetensorsWeights("org/model", "transformer/", { cacheDir })).files).toHaveLength(
      2,
    );
    const err = await resolveSafetensorsWeights("org/model", "empty", { cacheDir }).catch((e: unknown) => e);
    expect((err as HubError).code).toBe("not-found");
    expect((err as Error).message).toContain("model.safetensors.index.json");
    await expect(resolveSafetensorsWeights("org/model", "../x", { cacheDir })).rejects.toThrow(/stay inside/);
  });
});
