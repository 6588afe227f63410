import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DTYPE_BYTES, numel } from "./dtype.js";
import { SafetensorsError } from "./safetensors-error.js";
import { SafetensorsFile } from "./safetensors-file.js";
import { encodeSafetensors } from "./safetensors-write.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "safetensors-fuzz-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** mulberry32: a small seeded generator, so a failure is reproducible from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const SEEDS = [
  encodeSafetensors(
    {
      "a.weight": { dtype: "float32", shape: [2, 3], data: new Float32Array(6).fill(1.5) },
      b: { dtype: "bfloat16", shape: [3], data: new Uint16Array([1, 2, 3]) },
      c: { dtype: "int64", shape: [1], data: new BigInt64Array([7n]) },
      d: { dtype: "bool", shape: [0], data: new Uint8Array(0) },
    },
    { metadata: { format: "pt" } },
  ),
  encodeSafetensors({ w: { dtype: "uint8", shape: [4, 1], data: new Uint8Array([1, 2, 3, 4]) } }),
];

/** Characters that, dropped into a JSON header, tend to produce near-valid headers rather than noise. */
const TOKENS = [
  '"',
  ",",
  ":",
  "[",
  "]",
  "{",
  "}",
  "0",
  "9",
  "-",
  ".",
  "e",
  "1e400",
  "null",
  "F16",
  "U8",
  "BOOL",
  " ",
];

function mutate(seed: Uint8Array, r: () => number): Uint8Array {
  const bytes = Buffer.from(seed);
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  const at = (limit: number) => Math.floor(r() * limit);
  switch (at(7)) {
    case 0: {
      for (let k = 1 + at(4); k > 0; k--) bytes[at(bytes.length)] = at(256);
      return bytes;
    }
    case 1: {
      for (let k = 1 + at(3); k > 0; k--) bytes[8 + at(headerEnd - 8)] = at(256);
      return bytes;
    }
    case 2:
      return bytes.subarray(0, at(bytes.length));
    case 3: {
      const v =
        r() < 0.5 ? BigInt(at(bytes.length + 64)) : BigInt(Math.floor(r() * 2 ** 53)) << BigInt(at(12));
      bytes.writeBigUInt64LE(v & 0xffffffffffffffffn, 0);
      return bytes;
    }
    case 4: {
      // Replace a span of the header text with tokens, then fix the length so the JSON itself is tested.
      const text = bytes.subarray(8, headerEnd).toString("latin1");
      const from = at(text.length);
      const to = Math.min(text.length, from + at(6));
      let insert = "";
      for (let k = at(3); k >= 0; k--) insert += TOKENS[at(TOKENS.length)];
      const header = Buffer.from(text.slice(0, from) + insert + text.slice(to), "latin1");
      const out = Buffer.alloc(8 + header.length + bytes.length - headerEnd);
      out.writeBigUInt64LE(BigInt(header.length), 0);
      header.copy(out, 8);
      bytes.copy(out, 8 + header.length, headerEnd);
      return out;
    }
    case 5: {
      // Data bytes carry no structure: the file must still open.
      for (let k = 1 + at(4); k > 0 && bytes.length > headerEnd; k--)
        bytes[headerEnd + at(bytes.length - headerEnd)] = at(256);
      return bytes;
    }
    default: {
      const extra = Buffer.alloc(1 + at(16));
      for (let i = 0; i < extra.length; i++) extra[i] = at(256);
      return Buffer.concat([bytes, extra]);
    }
  }
}

describe("safetensors reader under corruption", () => {
  it("either opens a self-consistent file or throws SafetensorsError, for 1500 seeded corruptions", async () => {
    const r = rng(20250917);
    const path = join(dir, "fuzz.safetensors");
    let opened = 0;
    let refused = 0;
    for (let i = 0; i < 1500; i++) {
      const bytes = mutate(SEEDS[i % SEEDS.length] as Uint8Array, r);
      await writeFile(path, bytes);
      let file: SafetensorsFile;
      try {
        file = await SafetensorsFile.open(path);
      } catch (err) {
        if (!(err instanceof SafetensorsError)) {
          throw new Error(`case ${i}: expected a SafetensorsError, got ${String(err)}`, { cause: err });
        }
        expect(err.file).toBe(path);
        refused++;
        continue;
      }
      opened++;
      // What was accepted must tile the data section and read back in full, without any error.
      let end = 8 + file.headerLength;
      for (const t of file.tensors.values()) {
        expect(t.offset, `case ${i}`).toBe(end);
        expect(t.length).toBe(numel(t.shape) * DTYPE_BYTES[t.dtype]);
        expect((await file.readBytes(t.name)).length).toBe(t.length);
        end += t.length;
      }
      expect(end).toBe(bytes.length);
    }
    // Both outcomes must occur, or the corruptions are not exercising the validator.
    expect(opened).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(500);
  });
});
