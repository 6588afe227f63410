import { describe, expect, it } from "vitest";
import { EDIT_CATEGORIES } from "./edit.js";
import { InvalidOptionsError } from "./errors.js";
import { generateEdits, HELDOUT_MODULUS, randomEdit, randomScene, splitOfKey } from "./generate-edits.js";
import { Rng } from "./rng.js";
import { validateScene } from "./scene.js";

describe("randomScene", () => {
  it("makes valid scenes with 1–3 shapes", () => {
    const rng = new Rng(9);
    const counts = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const scene = randomScene(rng, 32);
      expect(() => validateScene(scene)).not.toThrow();
      counts.add(scene.shapes.length);
    }
    expect(counts).toEqual(new Set([1, 2, 3]));
  });
});

describe("randomEdit", () => {
  it("finds no extract for a lone shape on white, and a valid edit otherwise", () => {
    const lone = {
      canvas: 32,
      background: "white" as const,
      shapes: [{ kind: "circle" as const, color: "red" as const, cell: 4, size: 9 }],
    };
    expect(randomEdit(new Rng(1), lone, "extract")).toBeUndefined();
    expect(randomEdit(new Rng(1), lone, "move")?.target.shapes[0]?.cell).not.toBe(4);
    expect(randomEdit(new Rng(1), { ...lone, shapes: [] }, "remove")).toBeUndefined();
  });
});

describe("generateEdits", () => {
  it("is deterministic from its seed, and seeds differ", () => {
    const a = generateEdits({ seed: 3, count: 24, split: "train" });
    const b = generateEdits({ seed: 3, count: 24, split: "train" });
    const c = generateEdits({ seed: 4, count: 24, split: "train" });
    // Compare what defines a sample; deep-comparing every image byte by byte is needlessly slow.
    const fingerprint = (list: typeof a) =>
      list.map((e) => [e.key, e.requirement, e.instruction, Buffer.from(e.source.data).toString("base64")]);
    expect(fingerprint(b)).toEqual(fingerprint(a));
    expect(c.map((e) => e.canonicalKey)).not.toEqual(a.map((e) => e.canonicalKey));
    const shared = c.filter((e) => a.some((x) => x.canonicalKey === e.canonicalKey));
    expect(shared.length).toBeLessThan(3);
  });

  it("makes shorter lists prefixes of longer ones", () => {
    const long = generateEdits({ seed: 7, count: 30, split: "heldout" });
    const short = generateEdits({ seed: 7, count: 12, split: "heldout" });
    expect(short.map((e) => [e.key, e.requirement])).toEqual(
      long.slice(0, 12).map((e) => [e.key, e.requirement]),
    );
  });

  it("covers every category evenly, each with a target that differs from the source", () => {
    const edits = generateEdits({ seed: 1, count: 8 * EDIT_CATEGORIES.length, split: "train" });
    for (const category of EDIT_CATEGORIES) {
      const mine = edits.filter((e) => e.category === category);
      expect(mine).toHaveLength(8);
      for (const e of mine) {
        expect(e.edit.op).toBe(category);
        expect(Buffer.compare(e.source.data, e.target.data)).not.toBe(0);
        expect(e.targetScene).not.toEqual(e.scene);
      }
    }
  });

  it("honours size and a category subset", () => {
    const edits = generateEdits({
      seed: 2,
      count: 6,
      split: "train",
      size: 64,
      categories: ["move", "adjust"],
    });
    expect(edits.map((e) => e.category)).toEqual(["move", "adjust", "move", "adjust", "move", "adjust"]);
    expect(edits.every((e) => e.source.width === 64 && e.target.height === 64)).toBe(true);
  });

  it("never lets the held-out split produce an edit the train split can", () => {
    const train = generateEdits({ seed: 0, count: 3000, split: "train" });
    const heldout = generateEdits({ seed: 0, count: 1500, split: "heldout" });
    const trainKeys = new Set(train.map((e) => e.canonicalKey));
    expect(trainKeys.size).toBe(train.length); // unique within a split
    expect(heldout.filter((e) => trainKeys.has(e.canonicalKey))).toEqual([]);
    const trainPairs = new Set(
      train.map((e) => `${e.canonicalKey.split(":").slice(0, 5).join(":")}|${e.instruction}`),
    );
    expect(
      heldout.filter((e) =>
        trainPairs.has(`${e.canonicalKey.split(":").slice(0, 5).join(":")}|${e.instruction}`),
      ),
    ).toEqual([]);
    expect(train.every((e) => splitOfKey(e.canonicalKey) === "train")).toBe(true);
    expect(heldout.every((e) => splitOfKey(e.canonicalKey) === "heldout")).toBe(true);
  });

  it("reserves about 1/HELDOUT_MODULUS of the key space for held-out", () => {
    const rng = new Rng(5);
    let held = 0;
    const n = 4000;
    for (let i = 0; i < n; i++) if (splitOfKey(`key-${rng.next()}`) === "heldout") held++;
    expect(Math.abs(held / n - 1 / HELDOUT_MODULUS)).toBeLessThan(0.03);
  });

  it("rejects bad options with typed errors", () => {
    expect(() => generateEdits({ seed: 1.5, count: 1, split: "train" })).toThrow(InvalidOptionsError);
    expect(() => generateEdits({ seed: 1, count: -1, split: "train" })).toThrow(InvalidOptionsError);
    expect(() => generateEdits({ seed: 1, count: 1, split: "test" as never })).toThrow(InvalidOptionsError);
    expect(() => generateEdits({ seed: 1, count: 1, split: "train", size: 8 })).toThrow(InvalidOptionsError);
    expect(() => generateEdits({ seed: 1, count: 1, split: "train", categories: [] })).toThrow(
      InvalidOptionsError,
    );
  });
});
