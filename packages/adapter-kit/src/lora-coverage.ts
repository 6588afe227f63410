import { AdapterKitError } from "./errors.js";
import type { LoraFile } from "./lora-file.js";
import { checkLoraShapes, type LoraShapes, someOf } from "./lora-params.js";

/**
 * Every module of a loaded LoRA must have become a LoRA layer of the graph just built (`built` holds the
 * graph's factor keys, `<module>.lora_A.weight`, or their shapes); otherwise the file targets another model
 * (or a layer the builder cannot adapt) and would be silently half-applied. Throws naming the file and the
 * modules. Given shapes, every factor's shape is checked too (naming the tensor, the found and the expected
 * shape), so a LoRA of another model size fails here, before any graph runs, not at the runtime's feed.
 */
export function checkLoraCoverage(
  lora: LoraFile,
  built: ReadonlySet<string> | LoraShapes,
  model: string,
): void {
  const keys: Iterable<string> = built instanceof Set ? built : Object.keys(built);
  const has = (key: string) => (built instanceof Set ? built.has(key) : key in built);
  const where = lora.file ?? "the LoRA";
  const missing = lora.modules.filter((m) => !has(`${m}.lora_A.weight`));
  if (missing.length > 0) {
    const example = [...keys][0]?.replace(/\.lora_[AB]\.weight$/, "");
    throw new AdapterKitError(
      `${where}: the LoRA has ${missing.length} module(s) the ${model} transformer ` +
        `does not have or cannot adapt, e.g. ${someOf(missing)}` +
        `${example ? ` (its LoRA modules look like "${example}")` : ""}; ` +
        "is it a LoRA for another base model? Use a LoRA trained on this base, or choose the base it was made " +
        "for (--adapter, --base, --model).",
    );
  }
  if (!(built instanceof Set)) checkLoraShapes(lora, built as LoraShapes, where, `the ${model} transformer`);
}
