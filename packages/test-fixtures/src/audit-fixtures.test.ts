import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { auditFixtures } from "./audit-fixtures.js";
import { ALGORITHM_KEYS, MODEL_FIXTURE_KINDS, REGISTRY_FILE } from "./fixture-registry.js";
import { fixturesRoot, repositoryRoot } from "./fixtures-root.js";

it("every entry, kind and key of the repository's fixtures is claimed by a test, and each has a case", () => {
  const root = join(repositoryRoot(), "fixtures");
  const problems = auditFixtures(root);
  if (problems.length > 0) console.log(`audit of ${root}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  expect(problems).toEqual([]);
});

it("every entry, kind and key of the fixtures folder in use (EDIT_R1_FIXTURES) is claimed by a test", () => {
  const root = fixturesRoot();
  const problems = auditFixtures(root, { complete: false });
  if (problems.length > 0) console.log(`audit of ${root}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  expect(problems).toEqual([]);
});

describe("auditFixtures on made-up folders", () => {
  const made: string[] = [];
  afterEach(() => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** A folder with one fixture of every registered kind and one case of every registered key. */
  const complete = (): string => {
    const root = mkdtempSync(join(tmpdir(), "fixtures-audit-"));
    made.push(root);
    for (const kind of Object.keys(MODEL_FIXTURE_KINDS)) fixture(root, `tiny-${kind}`, kind);
    writeAlgorithms(root, Object.fromEntries(Object.keys(ALGORITHM_KEYS).map((k) => [k, [{}]])));
    mkdirSync(join(root, "images"));
    writeFileSync(join(root, "README.md"), "# fixtures\n");
    return root;
  };
  const fixture = (root: string, name: string, kind: string): void => {
    mkdirSync(join(root, name));
    writeFileSync(join(root, name, "meta.json"), JSON.stringify({ kind, config: {} }));
    writeFileSync(join(root, name, "weights.safetensors"), "");
    writeFileSync(join(root, name, "io.safetensors"), "");
  };
  const writeAlgorithms = (root: string, data: Record<string, unknown>): void => {
    writeFileSync(join(root, "algorithms.json"), JSON.stringify(data));
  };

  it("finds nothing wrong with a folder that has every kind and key", () => {
    expect(auditFixtures(complete())).toEqual([]);
  });

  it("names a folder whose kind no test claims, and the file to register it in", () => {
    const root = complete();
    fixture(root, "sd3-transformer", "sd3-transformer");
    const problems = auditFixtures(root);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^sd3-transformer\/meta\.json has kind "sd3-transformer", which no test claims/,
    );
    expect(problems[0]).toContain(REGISTRY_FILE);
    expect(problems[0]).not.toMatch(/did you mean/);
  });

  it("suggests the registered kind for a misspelled one", () => {
    const root = complete();
    fixture(root, "flux-2", "flux-transfomer");
    const problems = auditFixtures(root);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /flux-2\/meta\.json has kind "flux-transfomer".*did you mean "flux-transformer"/,
    );
  });

  it("fails a registered kind with no fixture", () => {
    const root = complete();
    rmSync(join(root, "tiny-autoencoder-kl"), { recursive: true });
    expect(auditFixtures(root)).toEqual([
      expect.stringMatching(/^no fixture of kind "autoencoder-kl" under .*autoencoder-kl\.test\.ts/),
    ]);
  });

  it("fails an algorithms.json key nobody claims, and a registered key with no case", () => {
    const root = complete();
    const keys = Object.fromEntries(Object.keys(ALGORITHM_KEYS).map((k) => [k, [{}]]));
    writeAlgorithms(root, { ...keys, sampler: [{}], group_stats: [] });
    const problems = auditFixtures(root);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(
      /^algorithms\.json: key "sampler" is claimed by no test \(did you mean "samplers"\?\).*algorithms-fixtures\.test\.ts/,
    );
    expect(problems[1]).toMatch(/^no "group_stats" case in any algorithms\.json/);
  });

  it("fails an unknown folder or file, a kind-less or broken meta.json, and missing fixture files", () => {
    const root = complete();
    mkdirSync(join(root, "scratch"));
    writeFileSync(join(root, "notes.txt"), "");
    mkdirSync(join(root, "no-kind"));
    writeFileSync(join(root, "no-kind", "meta.json"), JSON.stringify({ config: {} }));
    mkdirSync(join(root, "broken"));
    writeFileSync(join(root, "broken", "meta.json"), "{");
    rmSync(join(root, "tiny-flux-transformer", "io.safetensors"));
    // A folder that only holds more algorithm cases is claimed by the algorithm tests.
    mkdirSync(join(root, "more", "cases"), { recursive: true });
    writeFileSync(join(root, "more", "cases", "algorithms.json"), JSON.stringify({ samplers: [{}] }));
    const problems = auditFixtures(root);
    expect(problems).toEqual([
      expect.stringMatching(/^broken\/meta\.json: .* is not valid JSON/),
      expect.stringMatching(/^no-kind\/meta\.json has no string "kind"/),
      expect.stringMatching(/^notes\.txt: a file no test reads/),
      expect.stringMatching(/^scratch\/: a folder with no meta\.json and no algorithms\.json/),
      expect.stringMatching(/^tiny-flux-transformer\/ \(kind "flux-transformer"\) has no io\.safetensors/),
    ]);
  });

  it("says so when the folder does not exist", () => {
    expect(auditFixtures(join(tmpdir(), "no-such-fixtures-folder"))).toEqual([
      expect.stringMatching(/is not a folder$/),
    ]);
  });
});
