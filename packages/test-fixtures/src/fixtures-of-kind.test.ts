import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { algorithmCases, algorithmFixtureFiles } from "./algorithm-fixture-files.js";
import { FixtureError } from "./fixture-error.js";
import { MODEL_FIXTURE_KINDS, type ModelFixtureKind } from "./fixture-registry.js";
import { fixturesOfKind, readFixtureIo } from "./fixtures-of-kind.js";
import { fixturesRoot, repositoryRoot, sharedReferenceDataDir } from "./fixtures-root.js";

const saved = process.env.EDIT_R1_FIXTURES;
let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), "fixtures-of-kind-"));
});
afterEach(() => {
  if (saved === undefined) delete process.env.EDIT_R1_FIXTURES;
  else process.env.EDIT_R1_FIXTURES = saved;
  rmSync(tmp, { recursive: true, force: true });
});

it("finds the repository's fixtures/ from its own location, and the shared data beside the repository", () => {
  delete process.env.EDIT_R1_FIXTURES;
  expect(fixturesRoot()).toBe(join(repositoryRoot(), "fixtures"));
  expect(sharedReferenceDataDir()).toBe(join(repositoryRoot(), "..", "shared", "reference", "data"));
});

it("reads EDIT_R1_FIXTURES, and names it when the folder is missing", () => {
  process.env.EDIT_R1_FIXTURES = tmp;
  expect(fixturesRoot()).toBe(tmp);
  process.env.EDIT_R1_FIXTURES = join(tmp, "missing");
  expect(() => fixturesRoot()).toThrow(FixtureError);
  expect(() => fixturesRoot()).toThrow(/EDIT_R1_FIXTURES names .*missing, which is not a folder/);
});

it("lists the folders of a kind in name order, and refuses a kind that is not registered", () => {
  for (const [name, kind] of [
    ["b", "autoencoder-kl"],
    ["a", "autoencoder-kl"],
    ["c", "flux-transformer"],
  ]) {
    mkdirSync(join(tmp, name!));
    writeFileSync(join(tmp, name!, "meta.json"), JSON.stringify({ kind, config: { x: 1 } }));
  }
  mkdirSync(join(tmp, "images"));
  const found = fixturesOfKind("autoencoder-kl", tmp);
  expect(found.map((f) => f.name)).toEqual(["a", "b"]);
  expect(found[0]).toMatchObject({
    dir: join(tmp, "a"),
    meta: { kind: "autoencoder-kl", config: { x: 1 } },
    weightsPath: join(tmp, "a", "weights.safetensors"),
  });
  expect(() => fixturesOfKind("flux-transfomer" as ModelFixtureKind, tmp)).toThrow(
    /kind "flux-transfomer" is not registered: add it to MODEL_FIXTURE_KINDS in packages\/test-fixtures/,
  );
});

it("reads every registered kind of the repository's fixtures with its io tensors", async () => {
  for (const kind of Object.keys(MODEL_FIXTURE_KINDS) as ModelFixtureKind[]) {
    for (const fixture of fixturesOfKind(kind)) {
      const io = await readFixtureIo(fixture);
      expect([...io.keys()].some((k) => k.startsWith("in."))).toBe(true);
      expect([...io.keys()].some((k) => k.startsWith("out."))).toBe(true);
    }
  }
});

it("gathers algorithm cases by key across files at any depth, labelled by file", () => {
  writeFileSync(join(tmp, "algorithms.json"), JSON.stringify({ samplers: [1, 2] }));
  mkdirSync(join(tmp, "more"));
  writeFileSync(join(tmp, "more", "algorithms.json"), JSON.stringify({ samplers: [3], nft_loss: [4] }));
  const files = algorithmFixtureFiles(tmp);
  expect(files.map((f) => f.name)).toEqual(["algorithms.json", join("more", "algorithms.json")]);
  expect(algorithmCases("samplers", files)).toEqual([
    { label: "algorithms.json: samplers[0]", case: 1 },
    { label: "algorithms.json: samplers[1]", case: 2 },
    { label: `${join("more", "algorithms.json")}: samplers[0]`, case: 3 },
  ]);
  expect(() => algorithmCases("sampler" as "samplers", files)).toThrow(/key "sampler" is not registered/);
  writeFileSync(join(tmp, "algorithms.json"), "[]");
  expect(() => algorithmFixtureFiles(tmp)).toThrow(/must hold an object of case lists/);
});
