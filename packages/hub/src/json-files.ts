import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { DataFileError } from "./data-file-error.js";

/** Reads and parses a JSON file; syntax errors name the line and column where the parser gave up. */
export async function readJsonFile<T = unknown>(path: string): Promise<T> {
  const text = stripBom(await readText(path));
  try {
    return JSON.parse(text) as T;
  } catch (cause) {
    const message = (cause as Error).message;
    const at = /at position (\d+)/.exec(message);
    if (at) {
      const { line, column } = lineAndColumn(text, Number(at[1]));
      throw new DataFileError(path, `invalid JSON at column ${column}: ${message}`, { line, cause });
    }
    throw new DataFileError(path, `invalid JSON: ${message}`, { cause });
  }
}

/**
 * Yields the records of a JSON Lines file one at a time (blank lines are skipped), so large data
 * sets are not held in memory; a bad line stops with the file and line number.
 */
export async function* iterateJsonl<T = unknown>(path: string): AsyncGenerator<T> {
  const stream = createReadStream(path, { encoding: "utf8" });
  const opened = new Promise<void>((ok, fail) => {
    stream.once("open", () => ok());
    stream.once("error", fail);
  });
  try {
    await opened;
  } catch (cause) {
    throw new DataFileError(path, `cannot read (${(cause as Error).message}).`, { cause });
  }
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  try {
    for await (const raw of lines) {
      n++;
      const line = n === 1 ? stripBom(raw) : raw;
      if (line.trim() === "") continue;
      try {
        yield JSON.parse(line) as T;
      } catch (cause) {
        if (!(cause instanceof SyntaxError)) throw cause;
        throw new DataFileError(
          path,
          `invalid JSON on this line (${cause.message}); each line must hold one JSON value.`,
          {
            line: n,
            cause,
          },
        );
      }
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

/** All records of a JSON Lines file. */
export async function readJsonlFile<T = unknown>(path: string): Promise<T[]> {
  const out: T[] = [];
  for await (const record of iterateJsonl<T>(path)) out.push(record);
  return out;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (cause) {
    throw new DataFileError(path, `cannot read (${(cause as Error).message}).`, { cause });
  }
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function lineAndColumn(text: string, position: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < position && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: position - start + 1 };
}
