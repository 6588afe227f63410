import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Graph } from "@edit-r1/engine";
import { afterAll, describe, expect, it } from "vitest";
import { graphWeights } from "./graph-weights.js";
import {
  readShapeManifest,
  SHAPE_ONLY_FILE,
  shapeManifestBytes,
  shapeOnlyWeightSource,
} from "./shape-manifest.js";

const dir = mkdtempSync(join(tmpdir(), "shape-manifest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const manifest = {
  source: "org/model/transformer",
  dtype: "bfloat16",
  config: { num_layers: 1 },
  tensors: { "a.weight": [4, 3], "a.bias": [4], "b.weight": [2, 4] },
};

describe("shape manifests", () => {
  it("reads gzip'd and plain JSON; bytes and external-data ranges follow the shapes at the stored dtype", async () => {
    const gz = join(dir, "m.json.gz");
    const plain = join(dir, "m.json");
    writeFileSync(gz, gzipSync(JSON.stringify(manifest)));
    writeFileSync(plain, JSON.stringify(manifest));
    const m = await readShapeManifest(gz);
    expect(await readShapeManifest(plain)).toEqual(m);
    expect(shapeManifestBytes(m)).toBe((12 + 4 + 8) * 2);
    const source = shapeOnlyWeightSource(m);
    expect(source.names()).toEqual(Object.keys(manifest.tensors));
    expect(source.get("a.bias")).toEqual({
      dtype: "bfloat16",
      shape: [4],
      data: { path: SHAPE_ONLY_FILE, offset: 24, length: 8 },
    });
    expect(source.get("missing")).toBeUndefined();
    // A graph takes them as initializers of the stored dtype, cast to the compute dtype.
    const g = new Graph("g");
    const w = graphWeights(g, source, { dtype: "float32" }).get("b.weight", [2, 4]);
    expect(w.dtype).toBe("float32");
    expect(g.initializers.map((t) => t.dtype)).toEqual(["bfloat16"]);
  });

  it("refuses a file that is not a manifest", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ ...manifest, tensors: { x: [0, 3] } }));
    await expect(readShapeManifest(bad)).rejects.toThrow(/a shape manifest needs/);
    writeFileSync(bad, "not json");
    await expect(readShapeManifest(bad)).rejects.toThrow(/not a JSON shape manifest/);
  });
});
