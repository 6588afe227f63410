import { describe, expect, it } from "vitest";
import { Graph, GraphError } from "./graph.js";
import { add, concat, matmul, reduceSum, reshape, slice, transpose } from "./ops.js";

describe("graph builder", () => {
  it("infers shapes and names nodes by module path", () => {
    const g = new Graph("t");
    const x = g.input("x", "float32", [2, 3, 4]);
    const w = g.initializer("w", "float32", [4, 5], new Float32Array(20));
    const y = g.scope("block", () => g.scope("proj", () => matmul(x, w)));
    expect(y.shape).toEqual([2, 3, 5]);
    expect(y.producer?.scope).toBe("block/proj");
    expect(add(y, 1).shape).toEqual([2, 3, 5]);
    expect(reshape(y, [-1, 5]).shape).toEqual([6, 5]);
    expect(transpose(y, [2, 0, 1]).shape).toEqual([5, 2, 3]);
    expect(concat([y, y], 1).shape).toEqual([2, 6, 5]);
    expect(slice(y, [1], [-1], [2]).shape).toEqual([2, 3, 3]);
    expect(reduceSum(y, [1], true).shape).toEqual([2, 1, 5]);
  });
  it("fails at build time naming the op, scope and both shapes", () => {
    const g = new Graph();
    const a = g.input("a", "float32", [2, 3]);
    const b = g.input("b", "float32", [4, 5]);
    expect(() => g.scope("attn", () => matmul(a, b))).toThrow(GraphError);
    expect(() => g.scope("attn", () => matmul(a, b))).toThrow(
      /MatMul at "attn": inner dims differ: \[2,3\] @ \[4,5\]/,
    );
    expect(() => add(a, b)).toThrow(/\[2,3\] and \[4,5\] do not broadcast/);
    expect(() => g.input("a", "float32", [1])).toThrow(/already used/);
  });
});
