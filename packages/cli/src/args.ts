import { parseArgs } from "node:util";
import { EditR1Error } from "@edit-r1/core";

/** A command of `edit-r1`, with its flags in node:util parseArgs form. */
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>["options"];
}

export class UsageError extends EditR1Error {
  override name = "UsageError";
}

export interface ParsedCommand {
  command: string;
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** Splits argv into a known command and its flags; unknown commands or flags become a UsageError. */
export function parseCommand(argv: readonly string[], commands: readonly CommandSpec[]): ParsedCommand {
  const [first, ...rest] = argv;
  if (!first || first === "--help" || first === "-h" || first === "help") {
    return { command: "help", values: {}, positionals: rest };
  }
  const spec = commands.find((c) => c.name === first);
  if (!spec) {
    throw new UsageError(`Unknown command "${first}". Commands: ${commands.map((c) => c.name).join(", ")}.`);
  }
  try {
    const { values, positionals } = parseArgs({
      args: joinNegativeValues(rest, spec),
      options: { ...spec.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { command: spec.name, values, positionals };
  } catch (err) {
    throw new UsageError(`${parseProblem(err as NodeJS.ErrnoException, spec)}\nUsage: ${spec.usage}`);
  }
}

/** A number written after a flag that takes a value: `-1`, `-0.5`, `-1e3`, `-.5`. */
const NEGATIVE_NUMBER = /^-(\d|\.\d|Infinity$|NaN$)/;

/**
 * `--steps -1` as `--steps=-1`: node:util reads a value starting with "-" as a possible flag and refuses it
 * ("argument is ambiguous"); a negative number after a flag that takes a value is that flag's value, which the
 * command then checks and names (`--steps must be an integer ≥ 1, got "-1"`).
 */
function joinNegativeValues(args: readonly string[], spec: CommandSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const option = arg.startsWith("--") && !arg.includes("=") ? spec.options?.[arg.slice(2)] : undefined;
    if (option?.type === "string" && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** node:util's parse errors in the CLI's words, naming the flag. */
function parseProblem(err: NodeJS.ErrnoException, spec: CommandSpec): string {
  const flag = /'(-{1,2}[^' ]+)/.exec(err.message)?.[1];
  if (!flag) return err.message;
  const flags = Object.keys(spec.options ?? {})
    .map((f) => `--${f}`)
    .join(", ");
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${flag} for "${spec.name}"; its flags are ${flags} (\`edit-r1 ${spec.name} --help\` says what each does).`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(err.message)) return `${flag} needs a value.`;
      if (/ambiguous/.test(err.message))
        return `${flag} is followed by a value that starts with "-"; write it as ${flag}=<value> if that is the value, or give ${flag} its value.`;
      if (/does not take an argument/.test(err.message))
        return `${flag} is a switch and takes no value; drop the value (or write ${flag} alone).`;
      return err.message;
    default:
      return err.message;
  }
}

export function helpText(commands: readonly CommandSpec[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "edit-r1: reinforcement-learning post-training for image-editing models (Edit-R1 / DiffusionNFT)",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `edit-r1 <command> --help` for a command's flags.",
  ].join("\n");
}
