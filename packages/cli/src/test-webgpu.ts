import type { EditRequest } from "@edit-r1/core";
import { type Graph, Runtime, type Tensor } from "@edit-r1/engine";
import { webgpuForTests } from "@edit-r1/engine/testing";
import { expect } from "vitest";

/** For tests: whether WebGPU loads here (engine's `webgpuForTests`: required in CI, a warning and a skip elsewhere). */
export const webgpuLoads = webgpuForTests;

/** Largest |got − want| and that over the largest |want|; an output that is zero on both sides is 0 apart. */
export function relDiff(got: ArrayLike<number>, want: ArrayLike<number>): { abs: number; rel: number } {
  expect(got.length).toBe(want.length);
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    abs = Math.max(abs, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return { abs, rel: scale === 0 ? (abs === 0 ? 0 : Number.POSITIVE_INFINITY) : abs / scale };
}

/** A request with a deterministic patterned source image of `size`². */
export function patternRequest(size: number, key = "k"): EditRequest {
  return {
    key,
    instruction: "remove the red circle",
    source: {
      width: size,
      height: size,
      data: Uint8Array.from({ length: size * size * 3 }, (_, i) => (i * 37) % 256),
    },
  };
}

interface BuiltGraph {
  graph: Graph;
  outputs: Record<string, Tensor>;
}

/**
 * Runs each graph on the CPU and on WebGPU with CPU fallback disabled (so every node ran on WebGPU) with the
 * same deterministic feeds, and checks every output within `tolerance` of the CPU's scale. Timesteps and the
 * NFT inputs r and mask get values in (0, 1); LoRA factors (`theta.*`) small non-zero values, so that both
 * factors have gradients; everything else a sine pattern. Returns one line per output: the difference found.
 */
export async function webgpuMatchesCpu(
  graphs: Record<string, BuiltGraph>,
  tolerance: number,
): Promise<string[]> {
  const rt = new Runtime({ workers: 1 });
  const figures: string[] = [];
  try {
    for (const [kind, built] of Object.entries(graphs)) {
      const cpu = await rt.compile(built.graph, { outputs: built.outputs, device: "cpu" });
      const gpu = await rt.compile(built.graph, {
        outputs: built.outputs,
        device: "webgpu",
        cpuFallback: false,
      });
      const feeds: Record<string, Float32Array> = {};
      for (const spec of cpu.inputs) {
        const n = spec.shape.reduce((a, b) => a * b, 1);
        feeds[spec.name] =
          spec.name === "t" || spec.name === "r" || spec.name === "mask"
            ? Float32Array.from({ length: n }, (_, i) => 0.3 + 0.4 * ((i + 1) / n))
            : Float32Array.from(
                { length: n },
                (_, i) => (spec.name.startsWith("theta.") ? 0.1 : 1) * Math.sin(i * 0.37 + spec.name.length),
              );
      }
      const want = await cpu.run(feeds);
      const got = await gpu.run(feeds);
      for (const out of cpu.outputs) {
        const { abs, rel } = relDiff(got[out.name] as Float32Array, want[out.name] as Float32Array);
        expect(rel, `${kind} ${out.name}: max |webgpu − cpu| = ${abs}`).toBeLessThanOrEqual(tolerance);
        figures.push(`${kind} ${out.name}: ${abs.toExponential(2)} (${rel.toExponential(2)} rel)`);
      }
      await cpu.dispose();
      await gpu.dispose();
    }
  } finally {
    await rt.close();
  }
  return figures.sort(
    (a, b) => Number(b.split("(")[1]!.split(" ")[0]) - Number(a.split("(")[1]!.split(" ")[0]),
  );
}
