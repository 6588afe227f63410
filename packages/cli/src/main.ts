import { helpText, parseCommand, UsageError } from "./args.js";
import { COMMANDS } from "./commands.js";
import type { CommandContext } from "./context.js";
import { flagHelp } from "./flag-help.js";
import { loadAdapter } from "./registry.js";

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

const defaultIo: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/**
 * Runs `edit-r1` with the given arguments; returns the process exit code: 0 success, 1 failure, 2 bad usage,
 * 130 interrupted. Errors print as one message naming what was wrong; EDIT_R1_DEBUG=1 adds the stack.
 */
export async function main(
  argv: readonly string[],
  io: Io = defaultIo,
  options: { signal?: AbortSignal; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  const env = options.env ?? process.env;
  let parsed: ReturnType<typeof parseCommand>;
  try {
    parsed = parseCommand(argv, COMMANDS);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`edit-r1: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (parsed.command === "help") {
    io.out(helpText(COMMANDS));
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === parsed.command)!;
  if (parsed.values.help) {
    io.out(`Usage: ${command.usage}\n\nFlags:\n${flagHelp(command)}`);
    // `edit --adapter tiny --help`: what that adapter takes (sizes, vocabulary), when it says.
    const name = parsed.values.adapter;
    if (typeof name === "string") {
      const adapter = await loadAdapter(name).catch(() => undefined);
      if (adapter)
        io.out(
          `\nAdapter ${adapter.name}: ${adapter.cli.description}` +
            (adapter.cli.inputs ? `\n${adapter.cli.inputs.replace(/^/gm, "  ")}` : ""),
        );
    }
    return 0;
  }
  const ctx: CommandContext = {
    values: parsed.values,
    positionals: parsed.positionals,
    out: io.out,
    err: io.err,
    signal: options.signal ?? new AbortController().signal,
    env,
  };
  try {
    return await command.run(ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`edit-r1 ${command.name}: ${err.message}\nUsage: ${command.usage}`);
      return 2;
    }
    if (ctx.signal.aborted) {
      io.err(`edit-r1 ${command.name}: interrupted; everything written so far is kept.`);
      return 130;
    }
    const e = err as Error;
    io.err(`edit-r1 ${command.name}: ${e.message ?? String(err)}`);
    if (env.EDIT_R1_DEBUG) io.err(e.stack ?? "");
    return 1;
  }
}
