/**
 * What must not change between a run and its resumption: the editor and its pinned protocol, the judge
 * model and prompt version, the data version. Resuming with a different one would silently average two
 * different experiments, so it is refused.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@edit-r1/engine";
import { EditR1Error, RunFileError } from "./errors.js";

export const RUN_IDENTITY_FILE = "run-identity.json";

/** An output folder holds results of a run with other settings. */
export class ResumeMismatchError extends EditR1Error {
  readonly fields: string[];
  constructor(outDir: string, fields: string[]) {
    super(
      `${outDir} holds results of a run with a different ${fields.join(", ")}; resuming would mix two experiments. Use another output folder, or delete ${join(outDir, RUN_IDENTITY_FILE)} and items.jsonl to start over.`,
    );
    this.fields = fields;
  }
}

/** Records `identity` in `outDir`, or checks it against the one recorded by an earlier run. */
export async function claimOutDir(outDir: string, identity: Record<string, unknown>): Promise<void> {
  const path = join(outDir, RUN_IDENTITY_FILE);
  if (existsSync(path)) {
    const earlier = await readIdentity(path);
    const fields = [...new Set([...Object.keys(earlier), ...Object.keys(identity)])].filter(
      (k) => canonical(earlier[k]) !== canonical(identity[k]),
    );
    if (fields.length > 0) throw new ResumeMismatchError(outDir, fields);
    return;
  }
  await writeFileAtomic(path, `${JSON.stringify(identity, null, 2)}\n`);
}

async function readIdentity(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new RunFileError(path, `cannot read (${(cause as Error).message})`);
  }
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as Record<string, unknown>;
  } catch (cause) {
    throw new RunFileError(path, `invalid JSON (${(cause as Error).message})`);
  }
}

/** JSON with object keys sorted, so key order does not count as a difference. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
