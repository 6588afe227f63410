import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";

export interface ChartSeries {
  name: string;
  /** [x, y] pairs; non-finite y values are skipped. */
  points: readonly (readonly [number, number])[];
  color?: string;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

function tick(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000 || a < 0.01) return v.toExponential(1);
  return v.toPrecision(3);
}

/** An inline SVG line chart with axes, min/max ticks and a legend; no scripts, no external assets. */
export function svgLineChart(
  series: readonly ChartSeries[],
  options: { title: string; width?: number; height?: number; xLabel?: string } = { title: "" },
): string {
  const width = options.width ?? 560;
  const height = options.height ?? 260;
  const pad = { left: 58, right: 12, top: 28, bottom: 36 };
  const pts = series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const title = `<text x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${escapeHtml(options.title)}</text>`;
  if (pts.length === 0)
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img">${title}<text x="${width / 2}" y="${height / 2}" text-anchor="middle" font-size="12">no data</text></svg>`;
  let [xMin, xMax] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
  if (yMin === yMax) [yMin, yMax] = [yMin - Math.abs(yMin || 1) * 0.1, yMax + Math.abs(yMax || 1) * 0.1];
  const px = (x: number) => pad.left + ((x - xMin) / (xMax - xMin)) * (width - pad.left - pad.right);
  const py = (y: number) =>
    height - pad.bottom - ((y - yMin) / (yMax - yMin)) * (height - pad.top - pad.bottom);
  const parts: string[] = [title];
  parts.push(
    `<rect x="${pad.left}" y="${pad.top}" width="${width - pad.left - pad.right}" height="${height - pad.top - pad.bottom}" fill="none" stroke="#888"/>`,
  );
  for (const y of [yMin, (yMin + yMax) / 2, yMax]) {
    parts.push(
      `<text x="${pad.left - 4}" y="${py(y) + 4}" text-anchor="end" font-size="10">${tick(y)}</text>`,
      `<line x1="${pad.left}" x2="${width - pad.right}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`,
    );
  }
  for (const x of [xMin, xMax])
    parts.push(
      `<text x="${px(x)}" y="${height - pad.bottom + 14}" text-anchor="middle" font-size="10">${tick(x)}</text>`,
    );
  if (options.xLabel)
    parts.push(
      `<text x="${(pad.left + width - pad.right) / 2}" y="${height - 6}" text-anchor="middle" font-size="11">${escapeHtml(options.xLabel)}</text>`,
    );
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length > 0) {
      const d = good
        .map(([x, y], k) => `${k === 0 ? "M" : "L"}${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join(" ");
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.8"/>`);
      if (good.length === 1)
        parts.push(`<circle cx="${px(good[0]![0])}" cy="${py(good[0]![1])}" r="3" fill="${color}"/>`);
    }
    parts.push(
      `<text x="${pad.left + 8 + i * 130}" y="${pad.top + 14}" font-size="11" fill="${color}">${escapeHtml(s.name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" font-family="sans-serif">${parts.join("")}</svg>`;
}

export interface GalleryItem {
  /** A PNG file; it is inlined, so the report stays one self-contained file. */
  path: string;
  caption?: string;
}

export interface ReportInput {
  title: string;
  metrics: readonly Record<string, unknown>[];
  gallery?: readonly GalleryItem[];
  /** Extra key/value facts shown in a table (configuration, totals). */
  facts?: Record<string, string | number | boolean>;
}

function seriesOf(metrics: readonly Record<string, unknown>[], key: string): [number, number][] {
  return metrics
    .filter((m) => typeof m[key] === "number" && typeof m.step === "number")
    .map((m) => [m.step as number, m[key] as number]);
}

/** A self-contained HTML report: reward and loss curves as inline SVG, a facts table, and a PNG gallery. */
export function renderReport(input: ReportInput): string {
  const m = input.metrics;
  const charts = [
    svgLineChart(
      [
        { name: "reward mean", points: seriesOf(m, "rewardMean") },
        { name: "reward std", points: seriesOf(m, "rewardStd") },
      ],
      { title: "Reward", xLabel: "step" },
    ),
    svgLineChart(
      [
        { name: "loss", points: seriesOf(m, "loss") },
        { name: "policy loss", points: seriesOf(m, "policyLoss") },
      ],
      { title: "Loss", xLabel: "step" },
    ),
    svgLineChart([{ name: "KL (velocity MSE to reference)", points: seriesOf(m, "klLoss") }], {
      title: "KL term",
      xLabel: "step",
    }),
    svgLineChart(
      [
        { name: "grad norm", points: seriesOf(m, "gradNorm") },
        { name: "filtered fraction", points: seriesOf(m, "filteredFraction") },
      ],
      { title: "Gradient norm and filtering", xLabel: "step" },
    ),
  ];
  const facts = Object.entries(input.facts ?? {})
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join("");
  const gallery = (input.gallery ?? [])
    .filter((g) => existsSync(g.path))
    .map((g) => {
      const data = readFileSync(g.path).toString("base64");
      const caption = escapeHtml(g.caption ?? basename(g.path));
      return `<figure><img src="data:image/png;base64,${data}" alt="${caption}"><figcaption>${caption}</figcaption></figure>`;
    })
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(input.title)}</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}.charts{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}
figure{display:inline-block;margin:6px}img{image-rendering:pixelated;max-width:512px}figcaption{font-size:12px;text-align:center}</style>
</head><body><h1>${escapeHtml(input.title)}</h1>
<p>${m.length} step${m.length === 1 ? "" : "s"} logged.</p>
${facts ? `<table>${facts}</table>` : ""}
<section class="charts">${charts.join("\n")}</section>
${gallery ? `<h2>Samples</h2><section>${gallery}</section>` : ""}
</body></html>
`;
}
