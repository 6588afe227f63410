import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Adapter, AdapterLoadOptions, EditRequest, RgbImage } from "@edit-r1/core";
import {
  type ExecutionProvider,
  type Graph,
  lower,
  Runtime,
  summarizeUncovered,
  type Tensor,
  uncoveredNodes,
} from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adapterNames, loadAdapter } from "./registry.js";

/**
 * Kernel coverage: every adapter's rollout (velocity) and training (loss + gradients) graphs, built from its tiny
 * replica (tiny: the shipped weights) at each compute dtype and lowered for CUDA, have a CUDA kernel for every
 * node (the engine's KERNEL_TABLE). Lowered as built, the bfloat16 graphs have nodes CUDA cannot run; lowering
 * for the provider keeps those in float32. No GPU is needed: this checks the graphs against the table.
 */

type ComputeDtype = NonNullable<AdapterLoadOptions["dtype"]>;

const DTYPES: readonly ComputeDtype[] = ["float32", "float16", "bfloat16"];
const PROVIDER: ExecutionProvider = "cuda";

/** The smallest request each adapter accepts, and where its replica comes from. */
interface Case {
  name: string;
  /** Load options beyond dtype (model folder, a small resolution bucket). */
  options: Record<string, unknown>;
  request: EditRequest;
}

function image(width: number, height: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(128) };
}

let tmp: string;
const cases: Case[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "kernel-coverage-"));
  for (const name of adapterNames()) {
    const adapter = await loadAdapter(name);
    const options: Record<string, unknown> = {};
    if (adapter.cli.writeReplica) {
      const dir = join(tmp, name);
      await adapter.cli.writeReplica(dir, { seed: 0 });
      options.model = dir;
    }
    // The smallest bucket an adapter builds: 16×16 for the tiny model, 32×32 for the replicas.
    const size = name === "tiny" ? 16 : 32;
    if (name !== "tiny") options.resolution = [size, size];
    cases.push({
      name,
      options,
      request: { key: "k", instruction: "make the circle blue", source: image(size, size) },
    });
  }
}, 120_000);

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

interface Built {
  graph: Graph;
  outputs: Record<string, Tensor>;
}

async function graphsOf(adapter: Adapter, c: Case, dtype: ComputeDtype): Promise<Record<string, Built>> {
  const policy = await adapter.loadPolicy!({ ...c.options, dtype, device: "cpu" });
  try {
    const graphs = (policy as { graphs?: (r: EditRequest, b: number) => Record<string, Built> }).graphs;
    if (!graphs)
      throw new Error(`${c.name}: its policy does not expose graphs(); build it with createGraphPolicy`);
    return graphs.call(policy, c.request, 1);
  } finally {
    await (policy as { dispose?: () => Promise<void> }).dispose?.();
  }
}

describe("every adapter's graphs have a CUDA kernel for every node", () => {
  it("covers the four adapters", () => {
    expect(cases.map((c) => c.name).sort()).toEqual(["flux-kontext", "qwen-image-edit", "tiny", "uniworld"]);
  });

  for (const name of ["tiny", "flux-kontext", "qwen-image-edit", "uniworld"]) {
    it(`${name}: velocity and training graphs in ${DTYPES.join(", ")}`, async () => {
      const c = cases.find((x) => x.name === name)!;
      const adapter = await loadAdapter(name);
      const report: string[] = [];
      for (const dtype of DTYPES) {
        for (const [kind, built] of Object.entries(await graphsOf(adapter, c, dtype))) {
          const where = `${name} ${kind} ${dtype}`;
          const asBuilt = summarizeUncovered(uncoveredNodes(lower(built.graph, built).nodes, PROVIDER));
          const lowered = lower(built.graph, { outputs: built.outputs, provider: PROVIDER });
          // The check itself: nothing left without a kernel.
          expect(summarizeUncovered(uncoveredNodes(lowered.nodes, PROVIDER)), where).toEqual([]);
          // What lowering moved to float32 is exactly what the graph as built lacked.
          const moved = lowered.float32Fallbacks.map((f) => `${f.op} ${f.dtype} ×${f.count}`).sort();
          expect(moved, where).toEqual(asBuilt.map((s) => s.replace(/ \(.*$/, "")).sort());
          if (dtype === "float32") expect(moved, where).toEqual([]);
          // The graph computes in the dtype asked for: its matrix products do.
          const gemms = lowered.nodes.filter((n) => n.op === "Gemm" || n.op === "MatMul");
          expect(
            gemms.some((n) => n.inputs[0] === dtype),
            `${where}: a matrix product in ${dtype}`,
          ).toBe(true);
          report.push(`${where}: ${lowered.nodeCount} nodes; float32 for ${moved.join(", ") || "nothing"}`);
        }
      }
      console.log(report.join("\n"));
    }, 300_000);
  }
});

describe("a bfloat16 adapter graph lowered for a provider runs there", () => {
  it("tiny velocity in bfloat16, lowered for cpu (no bfloat16 math there), matches float32", async () => {
    const c = cases.find((x) => x.name === "tiny")!;
    const adapter = await loadAdapter("tiny");
    const rt = new Runtime({ workers: 1 });
    try {
      const run = async (dtype: ComputeDtype) => {
        const { velocity } = await graphsOf(adapter, c, dtype);
        const lowered = lower(velocity.graph, { outputs: velocity.outputs, provider: "cpu" });
        if (dtype === "bfloat16") expect(lowered.float32Fallbacks.length).toBeGreaterThan(0);
        const session = await rt.open(lowered);
        const feeds: Record<string, Float32Array> = {};
        for (const input of lowered.inputs) {
          const n = input.shape.reduce((a, b) => a * b, 1);
          feeds[input.name] =
            input.name === "t"
              ? new Float32Array(n).fill(0.5)
              : Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin(i * 0.37 + input.name.length));
        }
        return (await session.run(feeds)).v as Float32Array;
      };
      const want = await run("float32");
      const got = await run("bfloat16");
      let err = 0;
      let scale = 0;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(got[i]! - want[i]!));
        scale = Math.max(scale, Math.abs(want[i]!));
      }
      // bfloat16 keeps 8 mantissa bits; through a transformer the error stays a few percent of the output scale.
      expect(err).toBeLessThan(0.1 * scale);
      expect(err).toBeGreaterThan(0); // it did compute in bfloat16
    } finally {
      await rt.close();
    }
  });
});
