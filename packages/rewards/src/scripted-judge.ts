/**
 * A deterministic judge for tests and demos: every request is answered by a script function, which may
 * return an answer or a staged fault. It records every request it saw.
 */
import type { JudgeModel, JudgeModelReply, JudgeModelRequest } from "./judge-model.js";

export interface ScriptedJudge extends JudgeModel {
  /** Requests received so far, in arrival order (images decoded). */
  readonly calls: JudgeModelRequest[];
}

export interface ScriptedJudgeOptions {
  id?: string;
  /**
   * Decides each reply. `call` counts requests to this judge from 0, so a script can fail the first n
   * attempts and then answer. Default: always the distribution `[0, 0, 0, 0, 1, 0]` (score 4).
   */
  respond?: (request: JudgeModelRequest, call: number) => JudgeModelReply | Promise<JudgeModelReply>;
}

export function createScriptedJudge(options: ScriptedJudgeOptions = {}): ScriptedJudge {
  const calls: JudgeModelRequest[] = [];
  const respond = options.respond ?? (() => ({ distribution: [0, 0, 0, 0, 1, 0] }));
  return {
    id: options.id ?? "scripted",
    calls,
    judge(request) {
      calls.push(request);
      return respond(request, calls.length - 1);
    },
  };
}
