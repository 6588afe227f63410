import { AdapterKitError } from "./errors.js";
import type { LoraFile } from "./lora-file.js";

/**
 * Every module of a loaded LoRA must have become a LoRA layer of the graph just built (`built` holds the
 * graph's factor keys, `<module>.lora_A.weight`); otherwise the file targets another model (or a layer the
 * builder cannot adapt) and would be silently half-applied. Throws naming the first missing modules.
 */
export function checkLoraCoverage(lora: LoraFile, built: ReadonlySet<string>, model: string): void {
  const missing = lora.modules.filter((m) => !built.has(`${m}.lora_A.weight`));
  if (missing.length === 0) return;
  throw new AdapterKitError(
    `the LoRA has ${missing.length} module(s) the ${model} transformer ` +
      `does not have or cannot adapt, e.g. ${missing
        .slice(0, 3)
        .map((m) => `"${m}"`)
        .join(", ")}; ` +
      "is it a LoRA for another base model?",
  );
}
