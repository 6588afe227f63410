import { helpText, parseCommand, UsageError } from "./args.js";
import { COMMANDS } from "./commands.js";

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

const defaultIo: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** Runs `edit-r1` with the given arguments; returns the process exit code. */
export async function main(argv: readonly string[], io: Io = defaultIo): Promise<number> {
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
  const spec = COMMANDS.find((c) => c.name === parsed.command)!;
  if (parsed.values.help) {
    io.out(`Usage: ${spec.usage}`);
    return 0;
  }
  io.err(`edit-r1 ${spec.name}: not built yet (see the open issues). Usage: ${spec.usage}`);
  return 1;
}
