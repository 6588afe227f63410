import { UsageError } from "../args.js";
import { type CommandContext, intFlag, numberFlag, stringFlag } from "../context.js";

/**
 * `edit-r1 pretrain --adapter tiny`: supervised flow-matching pretraining of the embedded model on shapes-world
 * pairs, seeded and resumable (rerun with the same --out). The shipped weights came from this command.
 */
export async function pretrain(ctx: CommandContext): Promise<number> {
  const adapter = stringFlag(ctx, "adapter") ?? "tiny";
  if (adapter !== "tiny") {
    throw new UsageError(
      `pretraining is only built for the embedded tiny adapter; real base models come pretrained.`,
    );
  }
  const { pretrainTiny } = await import("@edit-r1/adapter-tiny");
  const out = stringFlag(ctx, "out") ?? "runs/pretrain-tiny";
  const steps = intFlag(ctx, "steps", 1) ?? 1250;
  const started = Date.now();
  const result = await pretrainTiny({
    steps,
    seed: intFlag(ctx, "seed") ?? 0,
    batchSize: intFlag(ctx, "batch", 1) ?? 32,
    lr: numberFlag(ctx, "lr") ?? 1e-3,
    out,
    resume: true,
    onProgress: (p) => {
      if (ctx.signal.aborted) throw new Error("interrupted");
      if (p.step % 25 === 0 || p.step === steps) {
        const s = ((Date.now() - started) / 1000).toFixed(0);
        ctx.err(`step ${p.step}/${steps}  loss ${p.loss.toFixed(4)}  ${s}s`);
      }
    },
  });
  ctx.out(
    `pretrained ${result.steps} steps (recent loss ${result.recentLoss.toFixed(4)}); weights in ${out}`,
  );
  ctx.out(`use them with: edit-r1 bench --adapter tiny --benchmark shapes --model ${out}`);
  return 0;
}
