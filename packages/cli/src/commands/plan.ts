import type { EditRequest, RgbImage, TrainablePolicy } from "@edit-r1/core";
import { type Graph, type MemoryPlan, numel, planMemory, type Tensor } from "@edit-r1/engine";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, requireFlag } from "../context.js";
import { checkAdapterFlags, loadAdapter } from "../registry.js";
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

/** Where the planned weights' shapes came from when no checkpoint was opened (the full-size model's key list). */
export interface ShapeSource {
  source: string;
  tensors: number;
  /** The stored bytes of every tensor in the list. */
  bytes: number;
  dtype: string;
  notes?: string[];
}

/** The trainable LoRA and what training keeps of it, on the device and in the host process. */
export interface TrainingState {
  /** LoRA factor tensors and their parameters. */
  factors: number;
  parameters: number;
  /** θ and θ_old fed to every training step as float32 (part of the step's feeds). */
  deviceFeedBytes: number;
  /** The float32 gradients the step returns (part of its activation peak: outputs stay alive). */
  gradientBytes: number;
  /** Held in the Node process, not on the device: θ, θ_old, the EMA and AdamW's m and v, float32 each. */
  hostBytes: number;
  /**
   * Kept on the device between steps (webgpu: θ, θ_old, the EMA, AdamW's m and v and the gradient sums, float32
   * each, in device values); 0 where the trainer holds the state (cpu, cuda). Part of the run's resident memory.
   */
  deviceStateBytes: number;
}

/** Known device sizes the plan is compared against (decimal GB, as the cards are sold). */
export const DEVICE_SIZES_GB = [80, 141] as const;

/**
 * What a CPU validation measured: on the 2-core CI machine the tiny adapter's training step at batch 16 used
 * 2.8× its plan in peak RSS; plan-cli.test.ts holds every plan to plan ≤ measured ≤ 3.5 × plan + 64 MiB.
 */
export const CPU_VALIDATION =
  "a lower bound: on CPU the tiny training step used 2.8× its plan in peak RSS (tested bound: 3.5× + 64 MiB); not yet measured on a GPU";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const fmt = (b: number) => (b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / MiB).toFixed(1)} MiB`);

type PlannablePolicy = TrainablePolicy & {
  graphs?: (r: EditRequest, b: number) => Record<string, BuiltGraph>;
  parameterShapes?: Record<string, readonly number[]>;
  shapeSource?: ShapeSource;
  dispose?: () => Promise<void>;
};

/**
 * `edit-r1 plan`: memory per phase before a run starts. It loads the adapter's policy and builds the graphs a
 * batch compiles — the rollout velocity (one sampler step) and, with `--train`, the fused training step — and
 * walks each: weights as stored, cast copies and folded constants, feeds, and the peak of live activations
 * (`planMemory`). Without `--model`, an adapter that ships its full-size checkpoint's tensor shapes
 * (`cli.loadShapePolicy`) is planned at full size with no weights on the machine; `--recompute` plans
 * gradient checkpointing per transformer block (also with `--model`, for adapters that declare it), and
 * `--attention-chunk N` attention N heads at a time. The runtime's own memory (onnxruntime, Node, thread pools,
 * a CUDA context) is not included.
 */
export async function plan(ctx: CommandContext): Promise<number> {
  const name = requireFlag(ctx, "adapter", "e.g. --adapter tiny");
  const adapter = await loadAdapter(name);
  const options = adapterOptions(ctx);
  const batch = intFlag(ctx, "batch", 1) ?? 1;
  const train = ctx.values.train === true;
  const recompute = ctx.values.recompute === true;
  if (!adapter.loadPolicy)
    throw new UsageError(`adapter "${name}" has no policy to plan (it cannot be trained or planned)`);
  // The same refusals as edit/train for the device and dtype: a plan for one the adapter cannot run would
  // mislead. Any resolution may be planned (a what-if: Edit-R1 trains FLUX-Kontext at 512², which Kontext's
  // preferred list for editing does not hold).
  checkAdapterFlags(
    adapter,
    {
      ...(options.device ? { device: options.device } : {}),
      ...(options.dtype ? { dtype: options.dtype } : {}),
    },
    train ? "train" : "edit",
  );
  const declared = adapter.capabilities.resolutions;
  const [width, height] = options.resolution ?? (declared === "any" ? [512, 512] : declared[0]!);
  const request: EditRequest = {
    key: "plan",
    instruction: "remove the red circle",
    source: grey(width, height),
  };
  const headChunk = options.attentionHeadChunk;
  if (headChunk !== undefined && !adapter.capabilities.attentionHeadChunk)
    throw new UsageError(`adapter "${name}" cannot chunk its attention by heads; drop --attention-chunk.`);
  const loadShapes = options.model === undefined ? adapter.cli.loadShapePolicy : undefined;
  // With --model the adapter's own policy plans it, which it can where it declares per-block checkpointing.
  if (recompute && !loadShapes && !adapter.capabilities.recompute)
    throw new UsageError(
      `--recompute is planned on an adapter's shipped full-size shapes (without --model) or by an adapter ` +
        `that checkpoints per block; adapter "${name}"` +
        (options.model === undefined ? " ships no shapes and does not" : " was given --model and does not"),
    );
  const loadOptions = { ...options, resolution: [width, height] as const };
  const policy = (await (loadShapes
    ? loadShapes({ ...loadOptions, ...(recompute ? { recompute: true } : {}) })
    : adapter.loadPolicy(loadOptions))) as PlannablePolicy;
  const phases: PhasePlan[] = [];
  let state: TrainingState | undefined;
  try {
    const graphs = policy.graphs;
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
    if (train) {
      phases.push({
        phase: "training",
        graph: "training",
        plan: planMemory(built.training!.graph, built.training!.outputs),
      });
      state = trainingState(policy.parameterShapes ?? {}, options.device ?? "cpu");
    }
  } finally {
    await policy.dispose?.();
  }
  const device = options.device ?? "cpu";
  const dtype = options.dtype ?? "float32";
  const shapes = policy.shapeSource;
  const peak = Math.max(...phases.map((p) => p.plan.totalBytes));
  // Every session keeps its own copy of the weights and the policy keeps its sessions open, so in a run the
  // rollout and training sessions are resident together.
  const resident = residentBytes(phases) + (state?.deviceStateBytes ?? 0);
  const fits = Object.fromEntries(
    DEVICE_SIZES_GB.map((gb) => [`${gb}GB`, { step: peak <= gb * 1e9, run: resident <= gb * 1e9 }]),
  );
  if (ctx.values.json === true) {
    ctx.out(
      JSON.stringify(
        {
          adapter: name,
          width,
          height,
          batch,
          device,
          dtype,
          recompute,
          ...(headChunk !== undefined ? { attentionHeadChunk: headChunk } : {}),
          ...(shapes ? { shapes } : {}),
          phases,
          ...(state ? { training: state } : {}),
          peakBytes: peak,
          residentBytes: resident,
          fits,
          margin: CPU_VALIDATION,
        },
        null,
        2,
      ),
    );
    return 0;
  }
  ctx.out(
    `plan: ${name} at ${width}×${height}, batch ${batch}, ${dtype}, device ${device}` +
      (recompute ? ", gradient checkpointing per block" : "") +
      (headChunk !== undefined ? `, attention ${headChunk} head${headChunk === 1 ? "" : "s"} at a time` : ""),
  );
  if (shapes) {
    ctx.out(
      `  full-size shapes of ${shapes.source} (${shapes.tensors} tensors, ${fmt(shapes.bytes)} as stored in ${shapes.dtype}); ` +
        "no weights read, the whole graph built",
    );
    for (const note of shapes.notes ?? []) ctx.out(`  ${note}`);
  }
  for (const { phase, plan: p } of phases) {
    ctx.out(
      `  ${phase.padEnd(8)} weights ${fmt(p.weightBytes)} + cast copies/folded constants ${fmt(p.castWeightBytes)} + feeds ${fmt(p.inputBytes)} ` +
        `+ activations peak ${fmt(p.peakActivationBytes)} = ${fmt(p.totalBytes)}  (${p.nodeCount} nodes; peak at ${p.peakAt})`,
    );
  }
  if (state)
    ctx.out(
      `  LoRA: ${state.factors} factors, ${millions(state.parameters)} parameters; θ and θ_old fed ${fmt(state.deviceFeedBytes)}, ` +
        `gradients out ${fmt(state.gradientBytes)} (both included above); host RAM for θ, θ_old, EMA, AdamW m and v: ${fmt(state.hostBytes)}` +
        (state.deviceStateBytes
          ? `; kept on ${device} between steps (θ, θ_old, EMA, m, v, gradient sums; in the run's resident memory): ${fmt(state.deviceStateBytes)}`
          : ""),
    );
  const where = device === "cpu" ? "of RAM" : "of device memory";
  ctx.out(`peak: ${fmt(peak)} ${where} (the largest phase)`);
  if (phases.length > 1)
    ctx.out(
      `resident in a run: ${fmt(resident)} ${where} (the rollout and training sessions stay open, each with its own copy of the weights)`,
    );
  if (device !== "cpu")
    ctx.out(
      `fits: ${DEVICE_SIZES_GB.map((gb) => `${gb} GB ${verdict(fits[`${gb}GB`]!, phases.length > 1)}`).join(", ")}`,
    );
  ctx.out(
    `margin: ${CPU_VALIDATION}; the runtime's own memory (onnxruntime, Node, a CUDA context) comes on top`,
  );
  return 0;
}

function verdict(f: { step: boolean; run: boolean }, both: boolean): string {
  if (!both) return f.step ? "yes" : "no";
  if (f.run) return "yes";
  return f.step ? "only with the rollout session closed" : "no";
}

/** Both phases' weights and cast copies (two sessions), plus the larger of their feeds + activation peaks. */
function residentBytes(phases: readonly PhasePlan[]): number {
  let fixed = 0;
  let transient = 0;
  for (const { plan: p } of phases) {
    fixed += p.weightBytes + p.castWeightBytes;
    transient = Math.max(transient, p.inputBytes + p.peakActivationBytes);
  }
  return fixed + transient;
}

function trainingState(shapes: Record<string, readonly number[]>, device: string): TrainingState {
  const factors = Object.keys(shapes).length;
  const parameters = Object.values(shapes).reduce((n, s) => n + numel(s), 0);
  return {
    factors,
    parameters,
    deviceFeedBytes: 2 * 4 * parameters,
    gradientBytes: 4 * parameters,
    hostBytes: 5 * 4 * parameters,
    // Adapter-kit's policies keep the training state on the device on webgpu (core's GraphDeviceTraining).
    deviceStateBytes: device === "webgpu" ? 6 * 4 * parameters : 0,
  };
}

const millions = (n: number) => (n >= 1e5 ? `${(n / 1e6).toFixed(1)} M` : String(n));

function grey(width: number, height: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(128) };
}
