#!/usr/bin/env node
import { main } from "./main.js";

// Ctrl-C aborts the command's signal so long work stops at a safe point; a second Ctrl-C exits at once.
const controller = new AbortController();
let interrupts = 0;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write(`\n${sig}: stopping at the next safe point (again to exit now)\n`);
    controller.abort();
  });
}

main(process.argv.slice(2), undefined, { signal: controller.signal }).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`edit-r1: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
