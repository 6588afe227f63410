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
      args: [...rest],
      options: { ...spec.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { command: spec.name, values, positionals };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nUsage: ${spec.usage}`);
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
