import type { ParsedCommand } from "./args.js";
import { UsageError } from "./args.js";

/** What a command handler gets: parsed flags, output streams and a signal that fires on Ctrl-C. */
export interface CommandContext {
  values: ParsedCommand["values"];
  positionals: string[];
  out: (line: string) => void;
  err: (line: string) => void;
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
}

export function stringFlag(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  return typeof v === "string" ? v : undefined;
}

export function requireFlag(ctx: CommandContext, name: string, hint: string): string {
  const v = stringFlag(ctx, name);
  if (!v) throw new UsageError(`--${name} is required (${hint}).`);
  return v;
}

/** Parses an integer flag, naming the flag and the bad value on error. */
export function intFlag(ctx: CommandContext, name: string, min = 0): number | undefined {
  const v = stringFlag(ctx, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got "${v}".`);
  return n;
}

export function numberFlag(ctx: CommandContext, name: string): number | undefined {
  const v = stringFlag(ctx, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}".`);
  return n;
}

/** A one-line progress indicator on stderr that rewrites itself on a terminal and prints sparsely otherwise. */
export function progressLine(ctx: CommandContext, label: string): (done: number, total: number) => void {
  const tty = Boolean(process.stderr.isTTY);
  let lastPrinted = -1;
  return (done, total) => {
    const pct = total ? Math.floor((100 * done) / total) : 100;
    if (tty) {
      process.stderr.write(`\r${label}: ${done}/${total} (${pct}%)${done === total ? "\n" : ""}`);
    } else if (done === total || pct >= lastPrinted + 25) {
      lastPrinted = pct;
      ctx.err(`${label}: ${done}/${total} (${pct}%)`);
    }
  };
}
