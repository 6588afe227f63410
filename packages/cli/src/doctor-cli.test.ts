import { CUDA_INSTALL_COMMAND, cudaProviderLibrary } from "@edit-r1/engine";
import { describe, expect, it } from "vitest";
import type { DoctorReport } from "./commands/doctor.js";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

/**
 * `edit-r1 doctor` run for real on this machine: every provider is tried in a child process. On a machine
 * without the CUDA provider (CI), cuda does not load and the fix is the install command.
 */
describe("edit-r1 doctor", () => {
  it("reports cpu loading, and for each provider that does not load, why and the fix", async () => {
    const c = capture();
    expect(await main(["doctor"], c.io), c.err.join("\n")).toBe(0);
    const text = c.out.join("\n");
    expect(text).toMatch(/^onnxruntime-node \d+\.\d+\.\d+/);
    expect(text).toMatch(/^ {2}cpu +loads$/m);
    for (const p of ["webgpu", "cuda"]) {
      const line = c.out.find((l) => l.startsWith(`  ${p} `))!;
      expect(line, p).toBeDefined();
      if (line.endsWith("does not load")) {
        const at = c.out.indexOf(line);
        expect(c.out.slice(at + 1, at + 3).join("\n"), p).toMatch(/fix: /);
      }
    }
    expect(text).toMatch(/^usable: .*--device cpu/m);
    // A provider that loads is a device the runtime takes.
    if (c.out.some((l) => /^ {2}webgpu +loads$/.test(l))) expect(text).toMatch(/^usable: .*--device webgpu/m);
  });

  it("--json: the same report as data; without the CUDA provider, cuda's fix is the install command", async () => {
    const c = capture();
    expect(await main(["doctor", "--json"], c.io), c.err.join("\n")).toBe(0);
    const report = JSON.parse(c.out.join("\n")) as DoctorReport;
    expect(report.providers.map((p) => p.provider)).toEqual(["cpu", "cuda", "webgpu"]);
    expect(report.providers.find((p) => p.provider === "cpu")!.loads).toBe(true);
    const cuda = report.providers.find((p) => p.provider === "cuda")!;
    if (cudaProviderLibrary() === undefined) {
      expect(cuda.loads).toBe(false);
      expect(cuda.error).toMatch(/providers_(shared|cuda)/);
      expect(cuda.fix).toContain(CUDA_INSTALL_COMMAND);
      expect(report.cudaProvider).toMatchObject({ installed: false });
      expect(report.fixes.some((f) => f.startsWith("cuda: "))).toBe(true);
    }
    for (const p of report.providers) expect(Boolean(p.fix), p.provider).toBe(!p.loads);
  });

  it("--help lists --json", async () => {
    const c = capture();
    expect(await main(["doctor", "--help"], c.io)).toBe(0);
    expect(c.out.join("\n")).toMatch(/--json +print the report as JSON/);
  });
});
