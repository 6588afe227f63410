import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataFileError } from "./data-file-error.js";
import { iterateJsonl, readJsonFile, readJsonlFile } from "./json-files.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hub-json-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

async function dataError(p: Promise<unknown>): Promise<DataFileError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof DataFileError)) throw new Error(`expected a DataFileError, got ${String(err)}`);
  return err;
}

describe("JSON files", () => {
  it("parses a JSON file, with or without a byte-order mark", async () => {
    expect(await readJsonFile(await file("a.json", '{"a":[1,2]}'))).toEqual({ a: [1, 2] });
    expect(await readJsonFile(await file("bom.json", '\ufeff{"b":true}'))).toEqual({ b: true });
  });

  it("names the line of a syntax error when the parser reports a position", async () => {
    const path = await file("bad.json", '{\n  "a": 1,\n  "b": 2\n  "c": 3\n}');
    const err = await dataError(readJsonFile(path));
    expect(err.path).toBe(path);
    expect(err.line).toBe(4);
    expect(err.message).toMatch(new RegExp(`^${path}:4: invalid JSON at column 3`));
  });

  it("reports a missing file as a DataFileError", async () => {
    const err = await dataError(readJsonFile(join(dir, "absent.json")));
    expect(err.message).toMatch(/cannot read/);
    const jsonl = await dataError(readJsonlFile(join(dir, "absent.jsonl")));
    expect(jsonl.message).toMatch(/cannot read/);
  });
});

describe("JSON Lines files", () => {
  it("reads one record per line, skipping blank lines, with CRLF endings and a BOM", async () => {
    const path = await file("d.jsonl", '\ufeff{"i":1}\r\n\r\n{"i":2,"s":"é\\n"}\r\n  \n[3]\n');
    expect(await readJsonlFile(path)).toEqual([{ i: 1 }, { i: 2, s: "é\n" }, [3]]);
    const seen: unknown[] = [];
    for await (const r of iterateJsonl(path)) seen.push(r);
    expect(seen).toHaveLength(3);
  });

  it("stops at a bad line, naming the file and the line number", async () => {
    const path = await file("e.jsonl", '{"i":1}\n\n{"i":2}\n{"i":3,}\n{"i":4}\n');
    const err = await dataError(readJsonlFile(path));
    expect(err.line).toBe(4);
    expect(err.message).toContain(`${path}:4: invalid JSON`);
  });
});
