import { EditR1Error } from "@edit-r1/core";
/**
 * Reads the three criterion scores out of an ImgEdit judge reply. A score line is the official one
 * (`step1_get_avgscore.py`): the line, trimmed, splits on ": " into exactly two parts and the second is
 * all digits. Unlike the official parser, which averages however many such lines it finds and silently
 * drops a reply with none, this one demands exactly three, each 1–5, and throws otherwise, so a reply
 * that does not follow the format is a counted failure, never a quietly different average.
 */

/** A judge reply that cannot be turned into three 1–5 scores; `reply` is the text as received. */
export class ImgEditReplyError extends EditR1Error {
  override readonly name = "ImgEditReplyError";
  readonly reply: string;
  constructor(detail: string, reply: string) {
    const shown = reply.length > 300 ? `${reply.slice(0, 300)}…` : reply;
    super(
      `${detail}; expected three lines "<criterion>: <1-5>" after "Brief reasoning: …". Reply was: ${JSON.stringify(shown)}`,
    );
    this.reply = reply;
  }
}

export interface ImgEditScores {
  /** The three scores in rubric order, after the cap (the second and third at most the first). */
  scores: [number, number, number];
  /** The three scores as the judge wrote them. */
  raw: [number, number, number];
  /** The labels the judge printed (judges shorten them; they are not checked). */
  labels: [string, string, string];
  /** True when the cap lowered the second or third score. */
  capped: boolean;
  /** Mean of the three (capped) scores: the sample score. */
  mean: number;
}

/**
 * Parses a reply. With `enforceCap` (default true) the rubric's rule that the second and third scores
 * never exceed the first is applied here, because judges break it and the official parser does not check.
 */
export function parseImgEditReply(reply: string, options: { enforceCap?: boolean } = {}): ImgEditScores {
  const found: Array<{ label: string; value: number }> = [];
  for (const raw of reply.split(/\r?\n/)) {
    const parts = raw.trim().split(": ");
    if (parts.length !== 2 || !/^\d+$/.test(parts[1]!)) continue;
    found.push({ label: parts[0]!, value: Number(parts[1]) });
  }
  if (found.length !== 3) {
    throw new ImgEditReplyError(`found ${found.length} score line(s), not 3`, reply);
  }
  const bad = found.find((f) => f.value < 1 || f.value > 5);
  if (bad) throw new ImgEditReplyError(`score ${bad.value} for "${bad.label}" is outside 1–5`, reply);
  const raw = found.map((f) => f.value) as [number, number, number];
  const enforce = options.enforceCap ?? true;
  const scores: [number, number, number] = enforce
    ? [raw[0], Math.min(raw[1], raw[0]), Math.min(raw[2], raw[0])]
    : [...raw];
  return {
    scores,
    raw,
    labels: found.map((f) => f.label) as [string, string, string],
    capped: scores[1] !== raw[1] || scores[2] !== raw[2],
    mean: (scores[0] + scores[1] + scores[2]) / 3,
  };
}
