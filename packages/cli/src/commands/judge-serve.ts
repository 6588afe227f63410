import { createShapesJudgeModel, type JudgeModel, startJudgeServer } from "@edit-r1/rewards";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, stringFlag } from "../context.js";

const JUDGE_MODELS: Record<string, () => JudgeModel> = {
  shapes: () => createShapesJudgeModel("shapes"),
};

/** `edit-r1 judge serve`: a local judge behind the OpenAI-compatible API, until Ctrl-C. */
export async function judgeServe(ctx: CommandContext): Promise<number> {
  const [sub] = ctx.positionals;
  if (sub !== "serve")
    throw new UsageError(`Unknown judge subcommand "${sub ?? ""}". Did you mean "judge serve"?`);
  const names = (stringFlag(ctx, "model") ?? "shapes").split(",");
  const models = names.map((n) => {
    const make = JUDGE_MODELS[n];
    if (!make)
      throw new UsageError(
        `Unknown judge model "${n}". Local judge models: ${Object.keys(JUDGE_MODELS).join(", ")}.`,
      );
    return make();
  });
  const keyEnv = stringFlag(ctx, "api-key-env");
  const apiKey = keyEnv ? ctx.env[keyEnv] : undefined;
  if (keyEnv && !apiKey) throw new UsageError(`--api-key-env names ${keyEnv}, which is not set.`);
  const host = stringFlag(ctx, "host") ?? "127.0.0.1";
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1" && !apiKey) {
    ctx.err(`warning: serving on ${host} without --api-key-env exposes the judge to the network.`);
  }
  const server = await startJudgeServer({ models, host, port: intFlag(ctx, "port") ?? 0, apiKey });
  ctx.out(`judge serving ${names.join(", ")} at ${server.url}`);
  ctx.out(`use it with: EDIT_R1_JUDGE_URL=${server.url} EDIT_R1_JUDGE_MODEL=${names[0]}`);
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  await server.close();
  ctx.err("judge stopped");
  return 0;
}
