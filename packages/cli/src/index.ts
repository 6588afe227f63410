export { type CommandSpec, helpText, parseCommand, UsageError } from "./args.js";
export { COMMANDS, type Command } from "./commands.js";
export type { CommandContext } from "./context.js";
export { type Io, main } from "./main.js";
