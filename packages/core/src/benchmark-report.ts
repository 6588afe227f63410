import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "@edit-r1/engine";
import { escapeHtml } from "./report.js";
import type { BenchmarkItemResult, BenchmarkReport } from "./types.js";

/**
 * Per-category means and the overall score as most editing benchmarks define it: the mean of the
 * category means (so small categories weigh as much as large ones). Failed items (no score) are
 * excluded from the means and counted, never replaced by a made-up score.
 */
export function aggregateBenchmark(
  benchmark: string,
  items: readonly BenchmarkItemResult[],
  protocol: Record<string, unknown>,
  categoryOrder?: readonly string[],
): BenchmarkReport {
  const sums = new Map<string, { sum: number; count: number }>();
  for (const c of categoryOrder ?? []) sums.set(c, { sum: 0, count: 0 });
  let excluded = 0;
  for (const item of items) {
    if (item.score === undefined || !Number.isFinite(item.score)) {
      excluded++;
      continue;
    }
    const s = sums.get(item.category) ?? { sum: 0, count: 0 };
    s.sum += item.score;
    s.count++;
    sums.set(item.category, s);
  }
  const categories: BenchmarkReport["categories"] = {};
  const means: number[] = [];
  for (const [name, { sum, count }] of sums) {
    if (count === 0) continue;
    categories[name] = { mean: sum / count, count };
    means.push(sum / count);
  }
  const overall = means.length ? means.reduce((a, b) => a + b, 0) / means.length : Number.NaN;
  return { benchmark, categories, overall, items: [...items], protocol, excluded };
}

/** The results table as markdown: one row per category, then the overall score and exclusions. */
export function benchmarkMarkdown(report: BenchmarkReport, digits = 3): string {
  const rows = Object.entries(report.categories).map(
    ([name, { mean, count }]) => `| ${name} | ${mean.toFixed(digits)} | ${count} |`,
  );
  return [
    `## ${report.benchmark}`,
    "",
    "| category | score | items |",
    "|---|---|---|",
    ...rows,
    `| **overall** | **${report.overall.toFixed(digits)}** | ${report.items.length - report.excluded} |`,
    "",
    report.excluded ? `${report.excluded} item(s) excluded (failed); see results.json for each reason.` : "",
  ].join("\n");
}

/** A self-contained HTML gallery: source, edited, instruction and scores per item (images by relative path). */
export function benchmarkGalleryHtml(
  report: BenchmarkReport,
  images: (item: BenchmarkItemResult) => {
    source?: string;
    edited?: string;
    target?: string;
    instruction?: string;
  },
): string {
  const cells = report.items.map((item) => {
    const im = images(item);
    const img = (src: string | undefined, label: string) =>
      src
        ? `<figure><img src="${escapeHtml(src)}" alt="${label}"><figcaption>${label}</figcaption></figure>`
        : "";
    const score =
      item.score === undefined
        ? `<b class="err">failed: ${escapeHtml(item.error ?? "unknown")}</b>`
        : `score ${item.score.toFixed(3)}`;
    return `<div class="item"><div class="imgs">${img(im.source, "source")}${img(im.edited, "edited")}${img(im.target, "target")}</div><p>${escapeHtml(im.instruction ?? "")}</p><p>${escapeHtml(item.category)} · ${score}</p></div>`;
  });
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(report.benchmark)} results</title><style>
body{font-family:sans-serif;margin:1em}.grid{display:flex;flex-wrap:wrap;gap:12px}.item{border:1px solid #ccc;padding:6px;width:330px}
.imgs{display:flex;gap:4px}figure{margin:0}img{width:96px;height:96px;image-rendering:pixelated;object-fit:contain}
figcaption{font-size:11px;text-align:center}.err{color:#b00}p{font-size:13px;margin:4px 0}</style></head><body>
<h1>${escapeHtml(report.benchmark)}: overall ${report.overall.toFixed(3)}</h1><pre>${escapeHtml(JSON.stringify(report.protocol, null, 2))}</pre>
<div class="grid">${cells.join("\n")}</div></body></html>`;
}

/** Writes results.json, results.md and gallery.html atomically into `outDir`. */
export async function writeBenchmarkOutputs(
  outDir: string,
  report: BenchmarkReport,
  gallery: Parameters<typeof benchmarkGalleryHtml>[1],
): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  await writeFileAtomic(join(outDir, "results.json"), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(join(outDir, "results.md"), `${benchmarkMarkdown(report)}\n`);
  await writeFileAtomic(join(outDir, "gallery.html"), benchmarkGalleryHtml(report, gallery));
}
