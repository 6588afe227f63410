import { mkdir, readdir, stat } from "node:fs/promises";
import { isIP } from "node:net";
import { resolve } from "node:path";
import {
  createShapesJudgeModel,
  type JudgeModel,
  openQwenVLJudge,
  parseRewardSpec,
  qwenVLJudgeModel,
  qwenVLOptionsFromSpec,
  startJudgeServer,
  writeQwenVLJudgeReplica,
} from "@edit-r1/rewards";
import { UsageError } from "../args.js";
import { type CommandContext, intFlag, requireFlag, stringFlag } from "../context.js";

const JUDGE_MODELS: Record<string, () => JudgeModel> = {
  shapes: () => createShapesJudgeModel("shapes"),
};

/**
 * One `--model` entry: a built-in judge name, or `qwen-vl:<folder or Hub repo>[?device=…&dtype=…&id=…]` (the
 * Qwen2.5-VL judge in process; `--device` / `--dtype` fill in what the entry leaves out).
 */
async function openModel(ctx: CommandContext, entry: string): Promise<JudgeModel> {
  const make = JUDGE_MODELS[entry];
  if (make) return make();
  if (/^qwen-vl(:|\?|$)/i.test(entry)) {
    const [part] = parseRewardSpec(entry);
    const options = qwenVLOptionsFromSpec(part!);
    const device = stringFlag(ctx, "device");
    if (device !== undefined && device !== "cpu" && device !== "cuda")
      throw new UsageError(`--device ${device}: use cpu or cuda.`);
    const dtype = stringFlag(ctx, "dtype");
    if (dtype !== undefined && dtype !== "float32" && dtype !== "float16")
      throw new UsageError(`--dtype ${dtype}: use float32 or float16.`);
    const judge = await openQwenVLJudge(options.model as string, {
      ...options,
      device: options.device ?? (device as "cpu" | "cuda" | undefined),
      dtype: options.dtype ?? (dtype as "float32" | "float16" | undefined),
      hub: { env: ctx.env },
    });
    return qwenVLJudgeModel(judge);
  }
  throw new UsageError(
    `Unknown judge model "${entry}". Local judge models: ${Object.keys(JUDGE_MODELS).join(", ")}, ` +
      "or qwen-vl:<folder or Hub repo id> for a Qwen2.5-VL checkpoint.",
  );
}

/** Whether a --host value only reaches this machine: any 127.x.x.x, ::1 (also written out or as IPv4-mapped), localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) !== 6) return false;
  // The URL parser writes IPv6 in its shortest form: ::1, and ::ffff:7fxx:xxxx for IPv4-mapped 127.x.
  const short = new URL(`http://[${h}]`).hostname;
  return short === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(short);
}

/** `edit-r1 judge serve` (a local judge behind the OpenAI-compatible API, until Ctrl-C) and `judge replica`. */
export async function judgeServe(ctx: CommandContext): Promise<number> {
  const [sub] = ctx.positionals;
  if (sub === "replica") return judgeReplica(ctx);
  if (sub !== "serve")
    throw new UsageError(
      `Unknown judge subcommand "${sub ?? ""}". Did you mean "judge serve" or "judge replica"?`,
    );
  // Flags first: loading a judge model can take minutes, a typo in --port should not.
  const port = intFlag(ctx, "port") ?? 0;
  if (port > 65535)
    throw new UsageError(`--port ${port} is not a TCP port; use 1 to 65535, or 0 for any free port.`);
  const keyEnv = stringFlag(ctx, "api-key-env");
  const apiKey = keyEnv ? ctx.env[keyEnv] : undefined;
  if (keyEnv && !apiKey) throw new UsageError(`--api-key-env names ${keyEnv}, which is not set.`);
  const host = stringFlag(ctx, "host") ?? "127.0.0.1";
  if (host.trim() === "") throw new UsageError("--host is empty; give an address, e.g. 127.0.0.1.");
  const entries = (stringFlag(ctx, "model") ?? "shapes").split(",");
  const models: JudgeModel[] = [];
  try {
    for (const entry of entries) models.push(await openModel(ctx, entry.trim()));
  } catch (err) {
    await Promise.all(models.map((m) => m.close?.()));
    throw err;
  }
  const names = models.map((m) => m.id);
  if (!isLoopbackHost(host) && !apiKey) {
    ctx.err(`warning: serving on ${host} without --api-key-env exposes the judge to the network.`);
  }
  let server: Awaited<ReturnType<typeof startJudgeServer>>;
  try {
    server = await startJudgeServer({ models, host, port, apiKey });
  } catch (err) {
    await Promise.all(models.map((m) => m.close?.()));
    throw err;
  }
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

/** `edit-r1 judge replica --out DIR [--seed N] [--force]`: a tiny random Qwen2.5-VL judge for smoke runs. */
async function judgeReplica(ctx: CommandContext): Promise<number> {
  const outFlag = requireFlag(ctx, "out", "the folder to write the judge replica into");
  const out = resolve(outFlag);
  const existing = await stat(out).catch(() => undefined);
  if (existing && !existing.isDirectory()) throw new UsageError(`--out ${outFlag} is a file; name a folder.`);
  if (existing && (await readdir(out)).length > 0 && ctx.values.force !== true)
    throw new UsageError(
      `--out ${outFlag} is not empty; choose a new folder, or pass --force to write into it.`,
    );
  await mkdir(out, { recursive: true });
  await writeQwenVLJudgeReplica(out, { seed: intFlag(ctx, "seed") ?? 0 });
  ctx.out(`wrote a tiny random Qwen2.5-VL judge to ${out}`);
  ctx.out(
    `score with it: edit-r1 train --reward qwen-vl:${out}   or serve it: edit-r1 judge serve --model qwen-vl:${out}`,
  );
  return 0;
}
