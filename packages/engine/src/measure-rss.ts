import { Graph } from "./graph.js";
import type { LoweredModel } from "./lower.js";
import * as ops from "./ops.js";
import { Runtime, type TensorData } from "./runtime.js";

/**
 * How much the process's resident memory grows while `model` is opened and run once with `feeds` on the CPU: the
 * measure `planMemory` is validated against. Run it in a fresh process started with `--expose-gc` (the tests do,
 * in a child process) so that nothing else allocates meanwhile. onnxruntime's fixed costs (the library, the
 * worker's thread pool) are paid by a warm-up session before the baseline is taken; RSS is then sampled every
 * 2 ms while the session opens and runs, so a short-lived peak can be missed by at most one sampling interval.
 */
export async function measurePeakRss(
  model: LoweredModel,
  feeds: Readonly<Record<string, TensorData>>,
): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc)
    throw new Error(
      "measurePeakRss: start node with --expose-gc, so the baseline is taken after a collection",
    );
  const rt = new Runtime({ workers: 1 });
  try {
    const g = new Graph("warm");
    const x = g.input("x", "float32", [4]);
    await (await rt.compile(g, { outputs: { y: ops.add(x, x) } })).run({ x: new Float32Array(4) });
    gc();
    await new Promise((r) => setTimeout(r, 50));
    const base = process.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 2);
    try {
      const session = await rt.open(model);
      await session.run(feeds);
    } finally {
      clearInterval(timer);
    }
    return Math.max(peak, process.memoryUsage().rss) - base;
  } finally {
    await rt.close();
  }
}
