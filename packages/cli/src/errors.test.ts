import { GEditDataError, parseVieScoreReply, VieScoreReplyError } from "@edit-r1/bench-gedit";
import { ImgEditDataError, ImgEditReplyError, parseImgEditReply } from "@edit-r1/bench-imgedit";
import { ConfigError, EditR1Error, ResumeMismatchError, RunFileError } from "@edit-r1/core";
import {
  EditR1Error as EngineEditR1Error,
  Graph,
  GraphError,
  lower,
  SafetensorsError,
} from "@edit-r1/engine";
import { DataFileError, HubError } from "@edit-r1/hub";
import {
  ImageDecodeError,
  JudgeConfigError,
  JudgeRequestError,
  JudgeResponseError,
  RewardContractError,
  RewardItemError,
} from "@edit-r1/rewards";
import { describe, expect, it } from "vitest";
import { parseCommand, UsageError } from "./args.js";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

// The CLI sees every layer but models (reached through the adapters), so this is where one `instanceof
// EditR1Error` is checked on real errors from each; the engine's test checks that models declares its
// errors the same way.
describe("one error base class across the layers", () => {
  it("core re-exports the engine's EditR1Error", () => {
    expect(EditR1Error).toBe(EngineEditR1Error);
  });

  it("errors from engine, core, hub, rewards, the benchmarks and the CLI are EditR1Errors, names unchanged", () => {
    const errors: [unknown, string][] = [
      [thrown(() => lower(new Graph(), { outputs: {} })), "GraphError"],
      [new SafetensorsError("truncated", "w.safetensors", "too short"), "SafetensorsError"],
      [new ConfigError("bad"), "ConfigError"],
      [new RunFileError("items.jsonl", "not JSON", 3), "RunFileError"],
      [new ResumeMismatchError("out", ["seed"]), "ResumeMismatchError"],
      [new HubError("not-cached", "org/repo", "not in the cache"), "HubError"],
      [new DataFileError("data.jsonl", "bad line", { line: 2 }), "DataFileError"],
      [new JudgeConfigError("bad spec"), "JudgeConfigError"],
      [new JudgeRequestError("down", { attempts: 3, retryable: true }), "JudgeRequestError"],
      [new JudgeResponseError("no score"), "JudgeResponseError"],
      [new RewardItemError("judge", "item-1", new Error("x")), "RewardItemError"],
      [new RewardContractError("bad outputs"), "RewardContractError"],
      [new ImageDecodeError("not an image"), "ImageDecodeError"],
      [thrown(() => parseImgEditReply("no scores here")), "ImgEditReplyError"],
      [new ImgEditDataError("missing"), "ImgEditDataError"],
      [thrown(() => parseVieScoreReply("no scores here")), "VieScoreReplyError"],
      [new GEditDataError("missing"), "GEditDataError"],
      [thrown(() => parseCommand(["frobnicate"], [])), "UsageError"],
    ];
    for (const [err, name] of errors) {
      expect(err, name).toBeInstanceOf(EditR1Error);
      expect((err as Error).name).toBe(name);
    }
    expect(errors[0]![0]).toBeInstanceOf(GraphError);
    expect(errors[13]![0]).toBeInstanceOf(ImgEditReplyError);
    expect(errors[15]![0]).toBeInstanceOf(VieScoreReplyError);
    expect(errors[17]![0]).toBeInstanceOf(UsageError);
  });
});
