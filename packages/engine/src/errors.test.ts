import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { writeFileAtomic } from "./atomic-write.js";
import { EditR1Error } from "./errors.js";
import { Graph } from "./graph.js";
import { evaluate } from "./interpret.js";
import { lower } from "./lower.js";
import { CudaUnavailableError, FeedError, RuntimeError, WebGpuUnavailableError } from "./runtime.js";
import { parseSafetensorsHeader } from "./safetensors-header.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The error `fn` throws (or rejects with). */
async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("EditR1Error", () => {
  test("is an Error named after its class, keeping message and cause", () => {
    class SomeError extends EditR1Error {}
    const cause = new Error("underneath");
    const e = new SomeError("what went wrong", { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(EditR1Error);
    expect(e.name).toBe("SomeError");
    expect(e.message).toBe("what went wrong");
    expect(e.cause).toBe(cause);
    expect(String(e)).toBe("SomeError: what went wrong");
    expect("cause" in new SomeError("no cause")).toBe(false);
  });

  test("every engine error is one, with its own name and message unchanged", async () => {
    const g = new Graph("g");
    const other = new Graph("other").input("y", "float32", [2]);
    const root = mkdtempSync(join(tmpdir(), "engine-errors-"));
    dirs.push(root);
    const cases: [unknown, string, RegExp][] = [
      [await caught(() => lower(g, { outputs: {} })), "GraphError", /no outputs requested/],
      [await caught(() => evaluate(g, {}, [other])), "InterpretError", /belongs to another graph/],
      [
        await caught(() =>
          parseSafetensorsHeader(new TextEncoder().encode("{}"), {
            path: "w.safetensors",
            headerLength: 9,
            fileSize: 17,
          }),
        ),
        "SafetensorsError",
        /^w\.safetensors: /,
      ],
      [
        await caught(() => writeFileAtomic(join(root, "missing", "f.txt"), "data", { makeDirs: false })),
        "AtomicWriteError",
        /Could not write .*f\.txt: .*Any previous file at that path is untouched/,
      ],
      [new RuntimeError("ort failed"), "RuntimeError", /^ort failed$/],
      [new FeedError("bad feed"), "FeedError", /^bad feed$/],
      [
        new CudaUnavailableError("libcudart missing"),
        "CudaUnavailableError",
        /ONNXRUNTIME_NODE_INSTALL=cuda12 .*onnxruntime-node 1\.30\.\d+ downloads a build for CUDA 13\.x and cuDNN 9\.x/,
      ],
      [
        new WebGpuUnavailableError("No supported adapters"),
        "WebGpuUnavailableError",
        /needs a Vulkan loader .*\(No supported adapters\).*scripts\/ensure-vulkan\.sh.*libvulkan1 and mesa-vulkan-drivers/,
      ],
    ];
    for (const [err, name, message] of cases) {
      expect(err, name).toBeInstanceOf(EditR1Error);
      expect((err as Error).name).toBe(name);
      expect((err as Error).message).toMatch(message);
    }
    expect(new FeedError("f")).toBeInstanceOf(RuntimeError);
  });
});

/**
 * The layers above the engine cannot be imported here (they depend on it), so their error classes are checked
 * where they are declared: in a checkout of the monorepo, no error class in those packages extends `Error`
 * itself. (`packages/shapes` depends on nothing and keeps its own `ShapesError` root; the CLI's test checks
 * real instances from every layer it depends on.)
 */
describe("every layer's errors extend EditR1Error", () => {
  const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
  const layers = [
    "packages/engine",
    "packages/core",
    "packages/models",
    "packages/hub",
    "packages/rewards",
    "packages/cli",
  ];
  const benchmarks = join(repo, "benchmarks");
  if (existsSync(benchmarks)) {
    for (const b of readdirSync(benchmarks)) layers.push(`benchmarks/${b}`);
  }
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return sources(path);
      return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.startsWith("test-")
        ? [path]
        : [];
    });
  const present = layers.filter((l) => existsSync(join(repo, l, "src")));

  test.runIf(present.length === layers.length)("no error class extends Error directly", () => {
    const offenders: string[] = [];
    for (const layer of present) {
      for (const file of sources(join(repo, layer, "src"))) {
        const text = readFileSync(file, "utf8");
        for (const m of text.matchAll(/class (\w+) extends Error\b/g)) {
          if (!(layer === "packages/engine" && m[1] === "EditR1Error")) {
            offenders.push(`${relative(repo, file)}: ${m[1]}`);
          }
        }
      }
    }
    expect(offenders).toEqual([]);
  });
});
