import { describe, expect, test } from "vitest";
import { Graph } from "./graph.js";
import { planMemory } from "./memory-plan.js";
import * as nn from "./nn.js";
import * as ops from "./ops.js";

describe("planMemory", () => {
  test("a chain frees each value after its last reader; the peak is two neighbours", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [1000]); // 4000 B
    const a = ops.exp(x); // 4000
    const b = ops.mul(a, a); // a read twice by one node
    const c = ops.neg(b);
    const plan = planMemory(g, { c });
    expect(plan.inputBytes).toBe(4000);
    // While b runs, a and b are alive (8000); then a is freed; while c runs b and c (8000).
    expect(plan.peakActivationBytes).toBe(8000);
    expect(plan.outputBytes).toBe(4000);
    expect(plan.weightBytes).toBe(0);
    expect(plan.totalBytes).toBe(12000);
  });

  test("a value kept for a late reader (a residual) raises the peak", () => {
    const g = new Graph();
    const x = g.input("x", "float32", [1000]);
    const r = ops.exp(x); // kept until the add
    const h1 = ops.tanh(r);
    const h2 = ops.tanh(h1);
    const y = ops.add(h2, r);
    const plan = planMemory(g, { y });
    // While h2 runs, r, h1 and h2 are alive = 12000 (the add again holds three: r, h2, y); without the residual, 8000.
    expect(plan.peakActivationBytes).toBe(12000);
    expect(plan.peakAt).toBe(`Tanh_${h2.producer!.id}`);
  });

  test("weights count once at their stored dtype, a cast copy once more, a transposed view not at all", () => {
    const g = new Graph();
    const x = g.input("x", "float16", [2, 8]);
    const w = g.initializer("w", "float32", [16, 8], new Float32Array(128)); // 512 B
    const w16 = ops.cast(w, "float16"); // folded copy: 256 B
    const y = nn.linear(x, w16); // Transpose(w16) then MatMul: [2,16] f16 = 64 B
    const dead = ops.exp(ops.cast(g.input("unused", "float32", [100]), "float16"));
    void dead;
    const plan = planMemory(g, { y });
    expect(plan.weightBytes).toBe(512);
    expect(plan.castWeightBytes).toBe(256);
    expect(plan.inputBytes).toBe(32);
    expect(plan.peakActivationBytes).toBe(64);
    expect(plan.nodeCount).toBe(3);
  });
});
