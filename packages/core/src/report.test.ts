import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { imageGridPng } from "./image-io.js";
import { renderReport, svgLineChart } from "./report.js";

describe("report", () => {
  it("draws curves as inline SVG and inlines gallery PNGs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edit-r1-report-"));
    try {
      const png = join(dir, "grid.png");
      const img = { width: 2, height: 2, data: new Uint8Array(12).fill(200) };
      writeFileSync(png, await imageGridPng([img, img, img], { columns: 2, scale: 4 }));
      const html = renderReport({
        title: "run <1>",
        metrics: [
          { step: 1, rewardMean: 0.3, loss: 1.2 },
          { step: 2, rewardMean: 0.5, loss: Number.NaN },
        ],
        gallery: [{ path: png, caption: "grid" }, { path: join(dir, "absent.png") }],
        facts: { lr: 0.0003 },
      });
      expect(html).toContain("<title>run &lt;1&gt;</title>");
      expect(html.match(/<svg/g)!.length).toBe(4);
      expect(html.match(/data:image\/png;base64,/g)!.length).toBe(1);
      expect(html).not.toMatch(/<script|(src|href)="https?:/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("plots points in order and says when there is no data", () => {
    const svg = svgLineChart(
      [
        {
          name: "r",
          points: [
            [0, 0],
            [1, 1],
          ],
        },
      ],
      { title: "t" },
    );
    expect(svg).toMatch(/<path d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+"/);
    expect(svgLineChart([{ name: "r", points: [] }], { title: "t" })).toContain("no data");
  });
});
