import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { crc32 } from "./encode-png.js";
import { InvalidOptionsError } from "./errors.js";
import { generateEdits } from "./generate-edits.js";
import { parseRequirement } from "./requirement-tag.js";
import { decodeSimplePng } from "./test-decode-png.js";
import { writeEditR1Jsonl } from "./write-edit-r1-jsonl.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir() {
  const d = await mkdtemp(join(tmpdir(), "edit-r1-shapes-"));
  dirs.push(d);
  return d;
}

describe("writeEditR1Jsonl", () => {
  it("writes Edit-R1 lines whose relative images decode to the sources", async () => {
    const dir = await tempDir();
    const edits = generateEdits({ seed: 4, count: 10, split: "heldout" });
    const written = await writeEditR1Jsonl(dir, edits, { writeTargets: true });
    expect(written.jsonlPath).toBe(join(dir, "heldout_metadata.jsonl"));
    expect(written.count).toBe(10);
    const lines = (await readFile(written.jsonlPath, "utf8")).trimEnd().split("\n");
    expect(lines).toHaveLength(10);
    for (const [i, line] of lines.entries()) {
      const row = JSON.parse(line);
      expect(Object.keys(row).sort()).toEqual(["image", "prompt", "requirement"]);
      expect(row.prompt).toBe(edits[i]!.instruction);
      expect(row.image.startsWith("/")).toBe(false);
      const png = decodeSimplePng(await readFile(join(dirname(written.jsonlPath), row.image)), crc32);
      expect(Buffer.compare(png.data, edits[i]!.source.data)).toBe(0);
      expect(parseRequirement(row.requirement).target).toEqual(edits[i]!.targetScene);
      const target = decodeSimplePng(
        await readFile(join(dir, "images", `${edits[i]!.key}.target.png`)),
        crc32,
      );
      expect(Buffer.compare(target.data, edits[i]!.target.data)).toBe(0);
    }
  });

  it("honours fileName and imagesDir and refuses unsafe names", async () => {
    const dir = await tempDir();
    const edits = generateEdits({ seed: 4, count: 2, split: "train" });
    const written = await writeEditR1Jsonl(dir, edits, { fileName: "train.jsonl", imagesDir: "img/src" });
    const row = JSON.parse((await readFile(written.jsonlPath, "utf8")).split("\n")[0]!);
    expect(row.image).toBe(`img/src/${edits[0]!.key}.png`);
    await expect(writeEditR1Jsonl(dir, edits, { imagesDir: "../out" })).rejects.toThrow(InvalidOptionsError);
    await expect(writeEditR1Jsonl(dir, edits, { fileName: "a/b.jsonl" })).rejects.toThrow(
      InvalidOptionsError,
    );
    await expect(writeEditR1Jsonl(dir, [edits[0]!, edits[0]!])).rejects.toThrow(InvalidOptionsError);
  });
});
