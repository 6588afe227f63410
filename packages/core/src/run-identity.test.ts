import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { claimOutDir, ResumeMismatchError } from "./run-identity.js";

describe("claimOutDir", () => {
  it("accepts the same identity (in any key order) and refuses a different one, naming the fields", async () => {
    const dir = mkdtempSync(join(tmpdir(), "identity-"));
    await claimOutDir(dir, { editor: "a", generation: { steps: 28, seed: 0 }, judgeModel: "gpt-4.1" });
    await claimOutDir(dir, { judgeModel: "gpt-4.1", generation: { seed: 0, steps: 28 }, editor: "a" });
    const err = await claimOutDir(dir, {
      editor: "a",
      generation: { steps: 8, seed: 0 },
      judgeModel: "gpt-4o",
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResumeMismatchError);
    expect((err as ResumeMismatchError).fields).toEqual(["generation", "judgeModel"]);
  });
});
