import type { RewardInput } from "@edit-r1/core";
import { generateEdits } from "@edit-r1/shapes";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type JudgeServer, startJudgeServer } from "./judge-server.js";
import { createMllmJudgeReward } from "./mllm-judge-reward.js";
import { createShapesJudgeModel, createShapesJudgeReward } from "./shapes-judge.js";

const edits = generateEdits({ seed: 5, count: 8, split: "train" });
// Half the items perfectly edited, half left untouched.
const batch: RewardInput[] = edits.map((e, i) => ({
  key: e.key,
  instruction: e.instruction,
  requirement: e.requirement,
  source: e.source,
  edited: i % 2 === 0 ? e.target : e.source,
}));

let server: JudgeServer;
beforeAll(async () => {
  server = await startJudgeServer({ models: [createShapesJudgeModel()] });
});
afterAll(async () => {
  await server.close();
});

describe("shapes judge", () => {
  it("scores perfect edits high and untouched images low, in process", async () => {
    const out = await createShapesJudgeReward().score(batch);
    out.forEach((o, i) => {
      if (i % 2 === 0) expect(o.score).toBeGreaterThan(0.85);
      else expect(o.score).toBeLessThan(0.15);
      expect(o.components["shapes.verifier"]).toBe(i % 2 === 0 ? 1 : 0);
    });
  });

  it("gives the same scores over HTTP through the MLLM client as in process (lossless images)", async () => {
    const local = await createShapesJudgeReward().score(batch);
    const remote = await createMllmJudgeReward({
      url: server.url,
      model: "shapes",
      image: { format: "png" },
    }).score(batch);
    expect(remote.map((r) => r.score)).toEqual(local.map((l) => expect.closeTo(l.score, 6)));
  });

  it("refuses items without a shapes requirement instead of inventing a score", async () => {
    const bare = [{ ...batch[0]!, requirement: undefined }];
    await expect(createShapesJudgeReward().score(bare)).rejects.toThrow(/no requirement/);
  });
});
