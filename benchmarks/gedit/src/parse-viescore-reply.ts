import { EditR1Error } from "@edit-r1/core";
/**
 * Reads the score pair out of a VIEScore judge reply. The extraction follows VIEScore's own parser
 * (`mllm_output_to_dict`): the text between two `||V^=^V||` delimiters if there are exactly two, else
 * from the first "{" to the last "}", else a bare "[a, b]"; then JSON, then one repair pass (quoting bare
 * keys, wrapping a bare number in a list). What it never does is the original's fallback of a random
 * score for a reply it cannot read: such a reply is an error, counted and reported. It also demands
 * exactly two numbers in 0–10, where the original takes the minimum of whatever list it got.
 */

/** A reply that does not hold two 0–10 scores; `reply` is the text as received. */
export class VieScoreReplyError extends EditR1Error {
  override readonly name = "VieScoreReplyError";
  readonly reply: string;
  constructor(detail: string, reply: string) {
    const shown = reply.length > 300 ? `${reply.slice(0, 300)}…` : reply;
    super(
      `${detail}; expected {"score": [a, b], "reasoning": "…"} with a, b in 0–10. Reply was: ${JSON.stringify(shown)}`,
    );
    this.reply = reply;
  }
}

const DELIMITER = "||V^=^V||";

/** The two scores of a reply, in the order the prompt asked for them. */
export function parseVieScoreReply(reply: string): [number, number] {
  const scores = extractScores(reply);
  if (scores.length !== 2) throw new VieScoreReplyError(`got ${scores.length} score(s), not 2`, reply);
  for (const s of scores) {
    if (typeof s !== "number" || !Number.isFinite(s) || s < 0 || s > 10) {
      throw new VieScoreReplyError(`score ${JSON.stringify(s)} is not a number in 0–10`, reply);
    }
  }
  return [scores[0] as number, scores[1] as number];
}

function extractScores(reply: string): unknown[] {
  const pieces = reply.split(DELIMITER);
  let body: string;
  if (pieces.length === 3) {
    body = pieces[1]!;
  } else {
    const open = reply.indexOf("{");
    const close = reply.lastIndexOf("}");
    if (open === -1) return bareScores(reply);
    if (close < open) throw new VieScoreReplyError("an opening { has no closing }", reply);
    body = reply.slice(open, close + 1);
  }
  const flat = body.replace(/\r?\n/g, "");
  const parsed = parseJson(flat) ?? parseJson(repairJson(flat));
  if (parsed === undefined || parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new VieScoreReplyError("the JSON object cannot be read", reply);
  }
  const score = (parsed as Record<string, unknown>).score;
  if (score === undefined) throw new VieScoreReplyError('the JSON object has no "score"', reply);
  return Array.isArray(score) ? score : [score];
}

/** No JSON object: a bare "[a, b]" list, or a bare integer 0–10, as the original accepts. */
function bareScores(reply: string): unknown[] {
  const open = reply.indexOf("[");
  const close = reply.lastIndexOf("]");
  if (open !== -1 && close > open) {
    const span = reply.slice(open, close + 1);
    if (/^\[\d+, ?\d+\]$/.test(span)) return JSON.parse(span) as number[];
  }
  const trimmed = reply.trim();
  if (/^\d+$/.test(trimmed) && Number(trimmed) <= 10) return [Number(trimmed)];
  throw new VieScoreReplyError("no JSON object and no bare [a, b] list", reply);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The original's repair: quote bare keys and wrap a bare numeric value in a list. */
function repairJson(text: string): string {
  return text
    .replace(/([{,]\s*)([A-Za-z_]\w*)\s*:/g, '$1"$2":')
    .replace(/("\w+"\s*:\s*)(-?\d+(?:\.\d+)?)(\s*[,}])/g, "$1[$2]$3");
}
