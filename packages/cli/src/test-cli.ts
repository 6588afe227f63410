import { join } from "node:path";

/** For tests: `main`'s output streams, captured line by line. */
export function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

/** For tests: a photograph the repository ships (fixtures/images). */
export function repoImage(name: string): string {
  return join(import.meta.dirname, "..", "..", "..", "fixtures", "images", name);
}
