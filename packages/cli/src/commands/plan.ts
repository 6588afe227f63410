import type { EditRequest, RgbImage } from "@edit-r1/core";
import { type Graph, type MemoryPlan, planMemory, type Tensor } from "@edit-r1/engine";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, requireFlag } from "../context.js";
import { loadAdapter } from "../registry.js";
import { adapterOptions } from "./bench.js";

interface BuiltGraph {
  graph: Graph;
  outputs: Record<string, Tensor>;
}

/** One phase of a run and its plan. */
export interface PhasePlan {
  phase: "rollout" | "training";
  graph: string;
  plan: MemoryPlan;
}

const MiB = 1024 * 1024;
const fmt = (b: number) =>
  b >= 1024 * MiB ? `${(b / 1024 / MiB).toFixed(2)} GiB` : `${(b / MiB).toFixed(1)} MiB`;

/**
 * `edit-r1 plan`: memory per phase before a run starts. It loads the adapter's policy (`--model`: a checkpoint
 * folder or a replica; the weights are not read, only their shapes), builds the graphs a batch compiles — the
 * rollout velocity (one sampler step) and, with `--train`, the fused training step — and walks each: weights as
 * stored, cast copies, feeds, and the peak of live activations (`planMemory`). The runtime's own memory
 * (onnxruntime, Node, thread pools; about 0.1 GiB on CPU) is not included.
 */
export async function plan(ctx: CommandContext): Promise<number> {
  const name = requireFlag(ctx, "adapter", "e.g. --adapter tiny");
  const adapter = await loadAdapter(name);
  const options = adapterOptions(ctx);
  const batch = intFlag(ctx, "batch", 1) ?? 1;
  const train = ctx.values.train === true;
  if (!adapter.loadPolicy)
    throw new UsageError(`adapter "${name}" has no policy to plan (it cannot be trained or planned)`);
  const declared = adapter.capabilities.resolutions;
  const [width, height] = options.resolution ?? (declared === "any" ? [512, 512] : declared[0]!);
  const request: EditRequest = {
    key: "plan",
    instruction: "remove the red circle",
    source: grey(width, height),
  };
  const policy = await adapter.loadPolicy({ ...options, resolution: [width, height] });
  const phases: PhasePlan[] = [];
  try {
    const graphs = (policy as { graphs?: (r: EditRequest, b: number) => Record<string, BuiltGraph> }).graphs;
    if (!graphs)
      throw new UsageError(
        `adapter "${name}": its policy does not expose its graphs, so it cannot be planned`,
      );
    const built = graphs.call(policy, request, batch);
    phases.push({
      phase: "rollout",
      graph: "velocity",
      plan: planMemory(built.velocity!.graph, built.velocity!.outputs),
    });
    if (train)
      phases.push({
        phase: "training",
        graph: "training",
        plan: planMemory(built.training!.graph, built.training!.outputs),
      });
  } finally {
    await (policy as { dispose?: () => Promise<void> }).dispose?.();
  }
  const device = options.device ?? "cpu";
  const dtype = options.dtype ?? "float32";
  if (ctx.values.json === true) {
    ctx.out(JSON.stringify({ adapter: name, width, height, batch, device, dtype, phases }, null, 2));
    return 0;
  }
  ctx.out(`plan: ${name} at ${width}×${height}, batch ${batch}, ${dtype}, device ${device}`);
  for (const { phase, plan: p } of phases) {
    ctx.out(
      `  ${phase.padEnd(8)} weights ${fmt(p.weightBytes)} + cast copies ${fmt(p.castWeightBytes)} + feeds ${fmt(p.inputBytes)} ` +
        `+ activations peak ${fmt(p.peakActivationBytes)} = ${fmt(p.totalBytes)}  (${p.nodeCount} nodes; peak at ${p.peakAt})`,
    );
  }
  const peak = Math.max(...phases.map((p) => p.plan.totalBytes));
  ctx.out(
    `peak: ${fmt(peak)} ${device === "cpu" ? "of RAM" : "of device memory"}, plus the runtime's own (about 0.1 GiB on CPU)`,
  );
  return 0;
}

function grey(width: number, height: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(128) };
}
