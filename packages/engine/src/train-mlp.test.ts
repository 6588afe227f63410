import { describe, expect, it } from "vitest";
import { grad } from "./autodiff.js";
import { Graph } from "./graph.js";
import { evaluate } from "./interpret.js";
import * as o from "./ops.js";
import { rng } from "./test-gradcheck.js";

/**
 * End-to-end: a 2-layer MLP fits sin(2x) with Adam written here in TypeScript, using gradients from the grad
 * graph evaluated by the interpreter. A wrong rule anywhere on the path stalls the loss.
 */
describe("training a small network with grad + evaluate", () => {
  it("fits a toy regression: the loss drops by more than 10×", () => {
    const n = 32;
    const hidden = 16;
    const g = new Graph("mlp");
    const x = g.input("x", "float32", [n, 1]);
    const t = g.input("t", "float32", [n, 1]);
    const shapes: Record<string, number[]> = { w1: [1, hidden], b1: [hidden], w2: [hidden, 1], b2: [1] };
    const p = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, g.input(k, "float32", s)]));
    const h = o.tanh(o.add(o.matmul(x, p.w1!), p.b1!));
    const yhat = o.add(o.matmul(h, p.w2!), p.b2!);
    const err = o.sub(yhat, t);
    const loss = o.reduceMean(o.mul(err, err));
    const names = Object.keys(shapes);
    const grads = grad(
      loss,
      names.map((k) => p[k]!),
    );

    const r = rng(7);
    const xs = Array.from({ length: n }, (_, i) => -1.5 + (3 * i) / (n - 1));
    const feeds: Record<string, number[]> = { x: xs, t: xs.map((v) => Math.sin(2 * v)) };
    for (const k of names) {
      const fanIn = shapes[k]![0] === hidden ? hidden : 1;
      feeds[k] = Array.from({ length: shapes[k]!.reduce((a, b) => a * b, 1) }, () =>
        k.startsWith("b") ? 0 : (2 * r() - 1) / Math.sqrt(fanIn),
      );
    }
    const m = names.map((k) => new Float64Array(feeds[k]!.length));
    const v = names.map((k) => new Float64Array(feeds[k]!.length));
    const [lr, b1, b2, eps] = [0.03, 0.9, 0.999, 1e-8];
    const losses: number[] = [];
    for (let step = 1; step <= 400; step++) {
      const [l, ...gs] = evaluate(g, feeds, [loss, ...grads]);
      losses.push(l![0]!);
      names.forEach((k, j) => {
        const w = feeds[k]!;
        const gj = gs[j]!;
        for (let i = 0; i < w.length; i++) {
          m[j]![i] = b1 * m[j]![i]! + (1 - b1) * gj[i]!;
          v[j]![i] = b2 * v[j]![i]! + (1 - b2) * gj[i]! * gj[i]!;
          const mh = m[j]![i]! / (1 - b1 ** step);
          const vh = v[j]![i]! / (1 - b2 ** step);
          w[i] = w[i]! - (lr * mh) / (Math.sqrt(vh) + eps);
        }
      });
    }
    const first = losses[0]!;
    const last = losses[losses.length - 1]!;
    expect(first).toBeGreaterThan(0.05);
    expect(last).toBeLessThan(first / 10);
  });
});
