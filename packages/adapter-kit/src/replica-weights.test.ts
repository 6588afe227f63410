import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "@edit-r1/core";
import { bfloat16ToFloat32, openSafetensors } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkReplicaDType,
  checkReplicaSeed,
  hubConfigJson,
  recordWeightShapes,
  replicaTensors,
  replicaWeightValues,
  type WeightShapes,
  writeConfigJson,
  writeShardedSafetensors,
} from "./index.js";
import { checkpointShapes, keyPatterns, readKeyList } from "./replica-keys.js";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "replica-weights-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const shapesOf = (entries: [string, number[]][]): WeightShapes => new Map(entries);

describe("recordWeightShapes", () => {
  it("keeps each weight a builder asks for once, in order, and fails on a second shape", () => {
    const shapes = recordWeightShapes("t", (_g, w) => {
      w.get("b.weight", [4, 2]);
      w.get("a.bias", [4]);
      w.get("b.weight", [4, 2]);
    });
    expect([...shapes]).toEqual([
      ["b.weight", [4, 2]],
      ["a.bias", [4]],
    ]);
    expect(() =>
      recordWeightShapes("t", (_g, w) => {
        w.get("x", [2]);
        w.get("x", [3]);
      }),
    ).toThrow(/"x" was asked for as \[2\] and as \[3\]/);
  });

  it("answers `has` only for the keys named present", () => {
    const seen: boolean[] = [];
    recordWeightShapes(
      "t",
      (_g, w) => {
        seen.push(w.has("shared.weight"), w.has("encoder.embed_tokens.weight"));
      },
      { present: ["shared.weight"] },
    );
    expect(seen).toEqual([true, false]);
  });
});

describe("replicaWeightValues / replicaTensors", () => {
  it("gives norm scales 1, small biases and matrices scaled by 0.5/√fan_in", () => {
    const rng = new Rng(3);
    expect([...replicaWeightValues("norm.weight", [5], rng)]).toEqual([1, 1, 1, 1, 1]);
    expect([...replicaWeightValues("vae.norm.gamma", [2, 1, 1], rng)]).toEqual([1, 1]);
    const std = (v: Float32Array) => Math.sqrt(v.reduce((a, b) => a + b * b, 0) / v.length);
    expect(std(replicaWeightValues("x.bias", [20000], rng))).toBeCloseTo(0.05, 2);
    expect(std(replicaWeightValues("x.weight", [200, 16, 3, 3], rng))).toBeCloseTo(0.5 / 12, 2);
  });

  it("depends on the seed, the component and the key only, stored as bf16 or f32", () => {
    const a = replicaTensors("c", shapesOf([["w", [8, 4]]]), 1);
    const b = replicaTensors(
      "c",
      shapesOf([
        ["other", [3]],
        ["w", [8, 4]],
      ]),
      1,
    );
    expect(b[1]![1].data).toEqual(a[0]![1].data);
    expect(a[0]![1].dtype).toBe("bfloat16");
    expect(replicaTensors("d", shapesOf([["w", [8, 4]]]), 1)[0]![1].data).not.toEqual(a[0]![1].data);
    expect(replicaTensors("c", shapesOf([["w", [8, 4]]]), 2)[0]![1].data).not.toEqual(a[0]![1].data);
    const f32 = replicaTensors("c", shapesOf([["w", [8, 4]]]), 1, "float32")[0]![1];
    expect(f32.dtype).toBe("float32");
    const widened = bfloat16ToFloat32(a[0]![1].data as Uint16Array);
    (f32.data as Float32Array).forEach((x, i) => {
      expect(Math.abs(x - widened[i]!)).toBeLessThanOrEqual(Math.abs(x) / 128);
    });
  });
});

describe("writeShardedSafetensors", () => {
  const shapes = shapesOf(Array.from({ length: 9 }, (_, i) => [`layers.${i}.weight`, [16, 2 + i]]));
  const tensors = replicaTensors("m", shapes, 0);

  it("cuts into N files of near-equal bytes in key order, with an index that maps every key to its file", async () => {
    const dir = join(tmp, "three");
    await writeShardedSafetensors(dir, "model", "model.safetensors.index.json", tensors, 3);
    expect((await readdir(dir)).sort()).toEqual([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
      "model.safetensors.index.json",
    ]);
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8"));
    const map = index.weight_map as Record<string, string>;
    expect(Object.keys(map)).toEqual([...shapes.keys()]);
    const files = Object.values(map);
    expect(files).toEqual([...files].sort());
    const total = tensors.reduce((n, [, t]) => n + t.data.byteLength, 0);
    expect(index.metadata.total_size).toBe(total);
    const perShard = new Map<string, number>();
    for (const [key, t] of tensors)
      perShard.set(map[key]!, (perShard.get(map[key]!) ?? 0) + t.data.byteLength);
    for (const bytes of perShard.values()) expect(Math.abs(bytes - total / 3)).toBeLessThan(total / 6);
    expect([...(await checkpointShapes(join(dir, "model.safetensors.index.json")))]).toEqual([...shapes]);
    const shard = await openSafetensors(join(dir, "model-00002-of-00003.safetensors"));
    expect(shard.metadata).toEqual({ format: "pt" });
  });

  it("keeps a tensor in every shard, writes two by default, and refuses more shards than tensors", async () => {
    const dir = join(tmp, "uneven");
    const big = replicaTensors(
      "m",
      shapesOf([
        ["big", [400, 4]],
        ["a", [2]],
        ["b", [2]],
      ]),
      0,
    );
    await writeShardedSafetensors(dir, "diffusion_pytorch_model", "custom.index.json", big, 3);
    const index = JSON.parse(await readFile(join(dir, "custom.index.json"), "utf8"));
    expect(new Set(Object.values(index.weight_map)).size).toBe(3);
    const two = join(tmp, "two");
    await writeShardedSafetensors(two, "model", "model.safetensors.index.json", tensors);
    expect((await readdir(two)).filter((f) => f.endsWith("-of-00002.safetensors"))).toHaveLength(2);
    await expect(writeShardedSafetensors(dir, "x", "x.json", big, 4)).rejects.toThrow(/shards/);
  });
});

describe("configs, seeds and key lists", () => {
  it("writes configs with sorted keys at every level and a final newline, creating the folder", async () => {
    const path = join(tmp, "deep", "er", "config.json");
    await writeConfigJson(path, { b: 1, a: { d: [{ z: 1, y: 2 }], c: null } });
    expect(await readFile(path, "utf8")).toBe(hubConfigJson({ a: { c: null, d: [{ y: 2, z: 1 }] }, b: 1 }));
    expect(await readFile(path, "utf8")).toBe(
      '{\n  "a": {\n    "c": null,\n    "d": [\n      {\n        "y": 2,\n        "z": 1\n      }\n    ]\n  },\n  "b": 1\n}\n',
    );
  });

  it("accepts only non-negative integer seeds and the two stored dtypes", () => {
    expect(checkReplicaSeed("f", undefined)).toBe(0);
    expect(checkReplicaSeed("f", 7)).toBe(7);
    expect(() => checkReplicaSeed("writeX", -1)).toThrow(/writeX: seed must be a non-negative integer/);
    expect(() => checkReplicaSeed("f", 1.5)).toThrow(RangeError);
    expect(checkReplicaDType("f", undefined)).toBe("bfloat16");
    expect(checkReplicaDType("f", "float32")).toBe("float32");
    expect(() => checkReplicaDType("writeX", "float16")).toThrow(
      /writeX: dtype must be "bfloat16" or "float32"/,
    );
  });

  it("reads a reference key list and compares names modulo block counts", async () => {
    const path = join(tmp, "keys.txt");
    await writeFile(
      path,
      '# m config={"num_layers": 2}\n# tensors=3\nblocks.0.attn.weight\t[4, 4]\nblocks.1.attn.weight\t[4, 4]\nout.0.1.bias\t[4]\n',
    );
    const list = await readKeyList(path);
    expect(list.config).toEqual({ num_layers: 2 });
    expect([...list.shapes]).toEqual([
      ["blocks.0.attn.weight", [4, 4]],
      ["blocks.1.attn.weight", [4, 4]],
      ["out.0.1.bias", [4]],
    ]);
    expect(keyPatterns(list.shapes.keys())).toEqual(["blocks.N.attn.weight", "out.N.N.bias"]);
    await writeFile(path, "no header\n");
    await expect(readKeyList(path)).rejects.toThrow(/config=/);
  });
});
