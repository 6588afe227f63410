import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  aggregateBenchmark,
  type Benchmark,
  type BenchmarkItemResult,
  type BenchmarkReport,
  type BenchmarkRunOptions,
  decodeImage,
  type Editor,
  type EditRequest,
  encodePng,
  writeBenchmarkOutputs,
} from "@edit-r1/core";
import { writeFileAtomic } from "@edit-r1/engine";
import { EDIT_CATEGORIES, generateEdits, type ShapesEdit, verifyDetails } from "@edit-r1/shapes";

export interface ShapesBenchmarkOptions {
  /** Held-out items (never producible by the train split). Default 64: 8 per category. */
  count?: number;
  /** Seed of the held-out stream; the default is the published benchmark. */
  seed?: number;
  /** Canvas size in pixels (the embedded tiny adapter works at 16). */
  size?: number;
}

export const SHAPES_BENCHMARK_DEFAULTS = { count: 64, seed: 20251016, size: 16 } as const;

/**
 * The embedded default's benchmark: held-out shapes-world edits scored by the exact verifier (no judge, so no
 * judge noise), per category; overall = mean of the category means, like ImgEdit.
 */
export class ShapesBenchmark implements Benchmark {
  readonly name = "shapes";
  readonly items: readonly ShapesEdit[];
  private readonly settings: Required<ShapesBenchmarkOptions>;

  constructor(options: ShapesBenchmarkOptions = {}) {
    this.settings = { ...SHAPES_BENCHMARK_DEFAULTS, ...options };
    this.items = generateEdits({
      seed: this.settings.seed,
      count: this.settings.count,
      split: "heldout",
      size: this.settings.size,
    });
  }

  async run(editor: Editor, options: BenchmarkRunOptions = {}): Promise<BenchmarkReport> {
    const items = this.items.slice(0, options.limit ?? this.items.length);
    const batchSize = options.batchSize ?? 16;
    const outDir = options.outDir;
    if (outDir) mkdirSync(join(outDir, "images"), { recursive: true });
    const edited = new Map<string, ShapesEdit["source"]>();
    // Resume: an output already on disk is scored as it is, not generated again.
    if (outDir) {
      for (const item of items) {
        const path = join(outDir, "images", `${item.key}.png`);
        if (existsSync(path)) edited.set(item.key, await decodeImage(readFileSync(path)));
      }
    }
    const todo = items.filter((i) => !edited.has(i.key));
    let done = items.length - todo.length;
    options.onProgress?.(done, items.length);
    for (let b = 0; b < todo.length; b += batchSize) {
      const batch = todo.slice(b, b + batchSize);
      const requests: EditRequest[] = batch.map((i) => ({
        key: i.key,
        instruction: i.instruction,
        requirement: i.requirement,
        source: i.source,
      }));
      const images = await editor.edit(requests);
      for (let k = 0; k < batch.length; k++) {
        const item = batch[k]!;
        edited.set(item.key, images[k]!);
        if (outDir)
          await writeFileAtomic(join(outDir, "images", `${item.key}.png`), await encodePng(images[k]!));
      }
      done += batch.length;
      options.onProgress?.(done, items.length);
    }
    const results: BenchmarkItemResult[] = items.map((item) => {
      try {
        const v = verifyDetails(edited.get(item.key)!, item.target, item.source);
        return {
          key: item.key,
          category: item.category,
          score: v.score,
          scores: { edit: v.edit, preserve: v.preserve },
        };
      } catch (err) {
        return { key: item.key, category: item.category, error: (err as Error).message };
      }
    });
    const protocol = {
      ...editor.protocol,
      editor: editor.name,
      benchmark: { ...this.settings, items: items.length, scoring: "exact verifier (edit × preserve)" },
    };
    const report = aggregateBenchmark(this.name, results, protocol, EDIT_CATEGORIES);
    if (outDir) {
      await this.writeReferenceImages(outDir);
      await writeBenchmarkOutputs(outDir, report, (item) => this.galleryImages(item));
    }
    return report;
  }

  /** Writes the sources and targets next to the outputs so the gallery shows all three (run does this). */
  async writeReferenceImages(outDir: string): Promise<void> {
    mkdirSync(join(outDir, "reference"), { recursive: true });
    for (const item of this.items) {
      const src = join(outDir, "reference", `${item.key}.source.png`);
      if (!existsSync(src)) await writeFileAtomic(src, await encodePng(item.source));
      const tgt = join(outDir, "reference", `${item.key}.target.png`);
      if (!existsSync(tgt)) await writeFileAtomic(tgt, await encodePng(item.target));
    }
  }

  /** Gallery image paths (relative to outDir) for core's writeBenchmarkOutputs. */
  galleryImages(item: BenchmarkItemResult) {
    const edit = this.items.find((i) => i.key === item.key);
    return {
      source: `reference/${item.key}.source.png`,
      edited: `images/${item.key}.png`,
      target: `reference/${item.key}.target.png`,
      instruction: edit?.instruction,
    };
  }
}
