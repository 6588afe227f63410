import { describe, expect, it } from "vitest";
import { Graph } from "./graph.js";
import * as ops from "./ops.js";
import { closeDefaultRuntime } from "./runtime.js";
import { SessionCache } from "./session-cache.js";

const doubler = () => {
  const graph = new Graph("double");
  const x = graph.input("x", "float32", [2]);
  return { graph, outputs: { y: ops.mul(x, 2) } };
};

describe("SessionCache", () => {
  it("compiles a key once, does not keep a failed compile, and refuses work after close", async () => {
    const cache = new SessionCache({ threads: 1 });
    let builds = 0;
    const build = () => {
      builds++;
      return doubler();
    };
    const a = await cache.get("d", build);
    const b = await cache.get("d", build);
    expect(a).toBe(b);
    expect(builds).toBe(1);
    expect(Array.from((await a.run({ x: Float32Array.of(1, 2) })).y as Float32Array)).toEqual([2, 4]);
    // A graph that fails to build is not kept: the next get builds (and reports) it again.
    let tries = 0;
    const broken = () => {
      tries++;
      const graph = new Graph("broken");
      const x = graph.input("x", "float32", [2]);
      return { graph, outputs: { y: ops.matmul(x, x) } };
    };
    expect(() => cache.get("b", broken)).toThrow(/MatMul/);
    expect(() => cache.get("b", broken)).toThrow(/MatMul/);
    expect(tries).toBe(2);
    await cache.close();
    await expect(cache.get("d", build)).rejects.toThrow(/closed/);
    await closeDefaultRuntime();
  });
});
