/**
 * The two VIEScore judge prompts GEdit-Bench uses for text-guided image editing, in our own words,
 * faithful to the official ones (context + two-image rule + editing rule for SC; context + quality rule
 * for PQ): the same inputs, the same two 0–10 integers per prompt with the same anchors, the same JSON
 * reply. The instruction goes to the SC prompt only, as in the original.
 */

/** Recorded with every result: a change of wording is a change of judge protocol. */
export const VIESCORE_PROMPT_VERSION = "edit-r1/viescore-tie@1";

const CONTEXT = [
  "You are a professional digital artist. You will judge AI-generated images against the rules below.",
  "All people and images shown are AI-generated, so there are no privacy concerns.",
  "Answer with a JSON object only, in this form (keep the reasoning short):",
  '{"score": [...], "reasoning": "..."}',
].join("\n");

/** Semantic consistency: the instruction, then [source image, edited image]. */
export function renderSemanticPrompt(instruction: string): string {
  return [
    CONTEXT,
    "",
    "RULES:",
    "Two images follow: the first is the original image, the second an edited version of it.",
    "Judge how well the editing instruction was carried out. If the edit failed, the two images may look the same.",
    "",
    "Give two integers from 0 to 10:",
    "- score1, editing success: 0 means the edited image does not follow the instruction at all; 10 means it follows it perfectly.",
    "- score2, over-editing: 0 means the edited scene is completely different from the original; 10 means the edit is as small as possible while still doing what was asked.",
    'Put them in the reply as "score": [score1, score2].',
    "",
    `Editing instruction: ${instruction}`,
  ].join("\n");
}

/** Perceptual quality: [edited image] only; the instruction is not shown. */
export function renderQualityPrompt(): string {
  return [
    CONTEXT,
    "",
    "RULES:",
    "One AI-generated image follows. Judge its perceptual quality.",
    "",
    "Give two integers from 0 to 10:",
    "- naturalness: 0 means the scene looks unnatural (wrong distances, shadows or lighting); 10 means it looks entirely natural.",
    "- artifacts: 0 means heavy artifacts (distortion, watermarks, scratches, blurred faces, malformed body parts, subjects that do not fit together); 10 means none.",
    'Put them in the reply as "score": [naturalness, artifacts].',
  ].join("\n");
}
