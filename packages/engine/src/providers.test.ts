import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { ElfError, readElfDependencies, sonameMajor } from "./elf-needed.js";
import { cudaProviderLibrary, onnxruntimeInstall, probeProvider } from "./providers.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** readelf's view of a library's dynamic section, when binutils is installed. */
function readelf(file: string): { needed: string[]; runpath: string[] } | undefined {
  let text: string;
  try {
    text = execFileSync("readelf", ["-d", file], { encoding: "utf8" });
  } catch {
    return undefined;
  }
  const needed = [...text.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  const runpath = [...text.matchAll(/\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]+)\]/g)].flatMap(
    (m) => m[1]!.split(":"),
  );
  return { needed, runpath };
}

describe("ELF dependencies", () => {
  const install = onnxruntimeInstall();
  for (const lib of ["libonnxruntime.so.1", "onnxruntime_binding.node"]) {
    test(`${lib}: DT_NEEDED and RUNPATH as readelf reads them`, () => {
      const file = path.join(install.binDir, lib);
      const ours = readElfDependencies(file);
      expect(ours.needed.length).toBeGreaterThan(0);
      expect(ours.needed).toContain("libc.so.6");
      const theirs = readelf(file);
      if (theirs) expect(ours).toEqual(theirs);
    });
  }

  test("a file that is not ELF is refused by name", () => {
    const d = mkdtempSync(path.join(tmpdir(), "elf-"));
    dirs.push(d);
    const f = path.join(d, "not-elf.so");
    writeFileSync(f, "#!/bin/sh\necho hello\n".padEnd(128, " "));
    expect(() => readElfDependencies(f)).toThrow(ElfError);
    expect(() => readElfDependencies(f)).toThrow(/not-elf\.so: not an ELF file/);
  });

  test("sonameMajor", () => {
    expect(sonameMajor("libcublas.so.12")).toBe(12);
    expect(sonameMajor("libcudnn.so.9.1.0")).toBe(9);
    expect(sonameMajor("libfoo.so")).toBeUndefined();
  });
});

describe("provider probes", () => {
  test("cpu loads and computes the probe", async () => {
    const r = await probeProvider("cpu");
    expect(r).toEqual({ provider: "cpu", loads: true });
  });

  test("cuda without its provider library does not load, and says why", async () => {
    if (cudaProviderLibrary()) return; // a machine with the CUDA provider installed: nothing to check here
    const r = await probeProvider("cuda");
    expect(r.loads).toBe(false);
    expect(r.error).toMatch(/libonnxruntime_providers_(shared|cuda)\.so/);
  });
});
