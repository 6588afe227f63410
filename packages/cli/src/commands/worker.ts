import { type AdapterLoadOptions, EditDataset, samplerByName } from "@edit-r1/core";
import { type PolicySpec, parseQueueUrl, RolloutWorker, WorkersConfigError } from "@edit-r1/workers";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, requireFlag, stringFlag } from "../context.js";
import { checkAdapterFlags, loadAdapter } from "../registry.js";

/**
 * `edit-r1 worker`: a rollout worker for `edit-r1 train --workers`. It takes jobs from the Redis queue until
 * Ctrl-C (the job in hand finishes first), rebuilding the trainer's policy from each job's spec on this
 * machine's device, and reading the old-policy versions from the trainer's version store.
 */
export async function worker(ctx: CommandContext): Promise<number> {
  const url = requireFlag(ctx, "queue", "the trainer's --workers URL, e.g. redis://127.0.0.1:6379");
  let location: ReturnType<typeof parseQueueUrl>;
  try {
    location = parseQueueUrl(url, "--queue");
  } catch (err) {
    if (err instanceof WorkersConfigError) throw new UsageError(`${err.message}.`);
    throw err;
  }
  const adapterName = requireFlag(ctx, "adapter", "the trainer's adapter, e.g. --adapter tiny");
  const adapter = await loadAdapter(adapterName);
  const device = stringFlag(ctx, "device");
  const model = stringFlag(ctx, "model");
  const overrides: AdapterLoadOptions = {
    ...(device ? { device: device as AdapterLoadOptions["device"] } : {}),
    ...(model ? { model } : {}),
  };
  // What this worker can run is checked now, not at the first job.
  checkAdapterFlags(adapter, overrides, "train");
  const lockSeconds = intFlag(ctx, "lock-seconds", 1) ?? 30;
  const data = stringFlag(ctx, "data");
  const store = stringFlag(ctx, "store");

  const load = async (spec: PolicySpec) => {
    if (spec.adapter !== adapterName)
      throw new WorkersConfigError(
        `this worker runs adapter ${adapterName}, the job is for ${spec.adapter}; start a worker with --adapter ${spec.adapter}`,
      );
    const options = { ...(spec.options as AdapterLoadOptions), ...overrides };
    ctx.err(`worker: loading ${adapterName} (${options.device ?? "cpu"}) for ${spec.data}`);
    const [policy, prompts] = await Promise.all([
      adapter.loadPolicy!(options),
      EditDataset.load(data ?? spec.data),
    ]);
    return { policy, sampler: samplerByName(spec.sampler), prompts };
  };
  const rollouts = new RolloutWorker({
    location,
    load,
    lockDurationMs: lockSeconds * 1000,
    log: (line) => ctx.err(line),
    ...(store ? { store } : {}),
    ...(stringFlag(ctx, "name") ? { name: stringFlag(ctx, "name") } : {}),
  });
  const slow = setTimeout(
    () => ctx.err(`worker ${rollouts.name}: waiting for Redis at ${location.display} …`),
    5000,
  );
  try {
    await rollouts.ready();
  } finally {
    clearTimeout(slow);
  }
  ctx.err(
    `worker ${rollouts.name}: taking rollout jobs from ${location.display} (adapter ${adapterName}); Ctrl-C stops`,
  );
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  await rollouts.close();
  ctx.err(`worker ${rollouts.name}: stopped after ${rollouts.jobsDone} jobs`);
  return 0;
}
