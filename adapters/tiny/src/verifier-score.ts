import type { Editor } from "@edit-r1/core";
import { generateEdits, verify } from "@edit-r1/shapes";
import { TINY_IMAGE_SIZE } from "./tiny-config.js";

export interface VerifierScore {
  mean: number;
  /** Mean per edit category. */
  categories: Record<string, { mean: number; count: number }>;
  scores: number[];
}

/**
 * Mean exact-verifier score of an editor on generated shapes edits (held-out split by default): a quick
 * check of a model, not the shapes benchmark (which pins its own protocol and writes reports).
 */
export async function verifierScore(
  editor: Editor,
  options: { count?: number; seed?: number; split?: "train" | "heldout" } = {},
): Promise<VerifierScore> {
  const edits = generateEdits({
    seed: options.seed ?? 0,
    count: options.count ?? 64,
    split: options.split ?? "heldout",
    size: TINY_IMAGE_SIZE,
  });
  const images = await editor.edit(
    edits.map((e) => ({
      key: e.key,
      instruction: e.instruction,
      source: e.source,
      requirement: e.requirement,
    })),
  );
  const scores = edits.map((e, i) => verify(images[i]!, e.target, e.source));
  const categories: VerifierScore["categories"] = {};
  edits.forEach((e, i) => {
    const c = (categories[e.category] ??= { mean: 0, count: 0 });
    c.mean += scores[i]!;
    c.count++;
  });
  for (const c of Object.values(categories)) c.mean /= c.count;
  return { mean: scores.reduce((a, b) => a + b, 0) / Math.max(1, scores.length), categories, scores };
}
