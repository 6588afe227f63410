import { Graph } from "@edit-r1/engine";
import { describe, expect, it } from "vitest";
import { graphWeights } from "./graph-weights.js";
import {
  memoryWeightSource,
  sliceWeightRows,
  stackWeightRows,
  type WeightEntry,
  WeightError,
} from "./weight-source.js";

const rows = (n: number, cols: number): WeightEntry => ({
  dtype: "float32",
  shape: [n, cols],
  data: Float32Array.from({ length: n * cols }, (_, i) => i),
});

describe("weight row slicing and stacking", () => {
  it("slices inline values as views and external data as byte ranges", () => {
    const inline = sliceWeightRows(rows(4, 3), 1, 2);
    expect(inline.shape).toEqual([2, 3]);
    expect([...(inline.data as Float32Array)]).toEqual([3, 4, 5, 6, 7, 8]);
    const ext = sliceWeightRows(
      { dtype: "bfloat16", shape: [6, 5], data: { path: "/w.safetensors", offset: 1000, length: 60 } },
      2,
      3,
    );
    expect(ext).toEqual({
      dtype: "bfloat16",
      shape: [3, 5],
      data: { path: "/w.safetensors", offset: 1020, length: 30 },
    });
  });

  it("slices across the parts of a stacked entry", () => {
    const stacked = stackWeightRows([rows(2, 2), sliceWeightRows(rows(3, 2), 1, 2)]);
    expect(stacked.shape).toEqual([4, 2]);
    const mid = sliceWeightRows(stacked, 1, 2);
    expect(mid.shape).toEqual([2, 2]);
    const parts = mid.data as WeightEntry[];
    expect(parts.map((p) => [...(p.data as Float32Array)])).toEqual([
      [2, 3],
      [2, 3],
    ]);
  });

  it("refuses out-of-range rows and mismatched parts, naming the key", () => {
    expect(() => sliceWeightRows(rows(2, 2), 1, 2, "w")).toThrow(/"w" of shape \[2, 2\]/);
    expect(() => stackWeightRows([rows(2, 2), rows(2, 3)], "w")).toThrow(WeightError);
  });

  it("materializes stacked parts as one concatenated tensor, cached per graph", () => {
    const src = memoryWeightSource({ w: stackWeightRows([rows(1, 2), rows(2, 2)]) });
    const g = new Graph();
    const w = graphWeights(g, src);
    const t = w.get("w", [3, 2]);
    expect(t.shape).toEqual([3, 2]);
    expect(graphWeights(g, src).get("w", [3, 2])).toBe(t);
    expect(g.initializers.map((i) => (i.source.kind === "initializer" ? i.source.name : ""))).toEqual([
      "w#0",
      "w#1",
    ]);
    expect(() => graphWeights(g, src, { dtype: "float16" })).toThrow(/already bound/);
    expect(() => w.get("w", [2, 3])).toThrow(/has shape \[3, 2\] but the model config needs \[2, 3\]/);
  });

  it("points at the BFL mapping when diffusers keys are missing from a BFL file", () => {
    const src = memoryWeightSource({ "double_blocks.0.img_attn.qkv.weight": rows(3, 1) });
    expect(() => graphWeights(new Graph(), src).get("x_embedder.weight", [1, 1])).toThrow(
      /fluxBflWeightSource/,
    );
  });
});
