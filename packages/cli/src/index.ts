export { type CommandSpec, helpText, parseCommand, UsageError } from "./args.js";
export { COMMANDS } from "./commands.js";
export { type Io, main } from "./main.js";
