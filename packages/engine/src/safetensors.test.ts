import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DTYPE_BYTES } from "./dtype.js";
import { openSafetensors } from "./safetensors-checkpoint.js";
import { bfloat16BitsToFloat32, float32ToBfloat16, float32ToFloat16 } from "./safetensors-convert.js";
import { SafetensorsError, type SafetensorsErrorCode } from "./safetensors-error.js";
import { SafetensorsFile } from "./safetensors-file.js";
import { readTensorBytes } from "./safetensors-read.js";
import { encodeSafetensors, type WritableTensor, writeSafetensors } from "./safetensors-write.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "safetensors-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file made of a literal header and data section, for the validation cases. */
async function rawFile(name: string, header: string, data: Uint8Array | number = 0): Promise<string> {
  const json = Buffer.from(header, "utf8");
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = Buffer.alloc(8 + json.length + body.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  out.set(body, 8 + json.length);
  const path = join(dir, name);
  await writeFile(path, out);
  return path;
}

async function openError(path: string): Promise<SafetensorsError> {
  const err = await SafetensorsFile.open(path).catch((e: unknown) => e);
  if (!(err instanceof SafetensorsError)) throw new Error(`expected a SafetensorsError, got ${String(err)}`);
  return err;
}

/**
 * Bytes the Python `safetensors` 0.8.0 library wrote (serialize) for: d I64 [-1, 2^40], h F64 scalar 3.5,
 * a.weight F32 [2,3] = arange(6)*0.5-1, empty F32 [0,4], e I32 [[7],[-8]], b BF16 bits
 * [0x3f80, 0xc000, 0x3f00, 0x4049], c F16 [1, 65504, 2^-24], f U8 [0,128,255], g BOOL [1,0],
 * metadata {format: "pt", note: "written by python safetensors"}.
 */
const PYTHON_FILE = Buffer.from(
  "SAIAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJmb3JtYXQiOiJwdCIsIm5vdGUiOiJ3cml0dGVuIGJ5IHB5dGhvbiBzYWZldGVuc29ycyJ9LCJkIjp7ImR0eXBlIjoiSTY0Iiwic2hhcGUiOlsyXSwiZGF0YV9vZmZzZXRzIjpbMCwxNl19LCJoIjp7ImR0eXBlIjoiRjY0Iiwic2hhcGUiOltdLCJkYXRhX29mZnNldHMiOlsxNiwyNF19LCJhLndlaWdodCI6eyJkdHlwZSI6IkYzMiIsInNoYXBlIjpbMiwzXSwiZGF0YV9vZmZzZXRzIjpbMjQsNDhdfSwiZW1wdHkiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzAsNF0sImRhdGFfb2Zmc2V0cyI6WzQ4LDQ4XX0sImUiOnsiZHR5cGUiOiJJMzIiLCJzaGFwZSI6WzIsMV0sImRhdGFfb2Zmc2V0cyI6WzQ4LDU2XX0sImIiOnsiZHR5cGUiOiJCRjE2Iiwic2hhcGUiOls0XSwiZGF0YV9vZmZzZXRzIjpbNTYsNjRdfSwiYyI6eyJkdHlwZSI6IkYxNiIsInNoYXBlIjpbM10sImRhdGFfb2Zmc2V0cyI6WzY0LDcwXX0sImYiOnsiZHR5cGUiOiJVOCIsInNoYXBlIjpbM10sImRhdGFfb2Zmc2V0cyI6WzcwLDczXX0sImciOnsiZHR5cGUiOiJCT09MIiwic2hhcGUiOlsyXSwiZGF0YV9vZmZzZXRzIjpbNzMsNzVdfX0gIP//////////AAAAAAABAAAAAAAAAAAMQAAAgL8AAAC/AAAAAAAAAD8AAIA/AADAPwcAAAD4////gD8AwAA/SUAAPP97AQAAgP8BAA==",
  "base64",
);

function pythonFileTensors(): Record<string, WritableTensor> {
  return {
    "a.weight": { dtype: "float32", shape: [2, 3], data: new Float32Array([-1, -0.5, 0, 0.5, 1, 1.5]) },
    b: { dtype: "bfloat16", shape: [4], data: new Uint16Array([0x3f80, 0xc000, 0x3f00, 0x4049]) },
    c: { dtype: "float16", shape: [3], data: float32ToFloat16([1, 65504, 2 ** -24]) },
    d: { dtype: "int64", shape: [2], data: new BigInt64Array([-1n, 2n ** 40n]) },
    e: { dtype: "int32", shape: [2, 1], data: new Int32Array([7, -8]) },
    f: { dtype: "uint8", shape: [3], data: new Uint8Array([0, 128, 255]) },
    g: { dtype: "bool", shape: [2], data: new Uint8Array([1, 0]) },
    h: { dtype: "float64", shape: [], data: new Float64Array([3.5]) },
    empty: { dtype: "float32", shape: [0, 4], data: new Float32Array(0) },
  };
}

describe("safetensors compatibility with the Python library", () => {
  it("reads a file the Python library wrote", async () => {
    const path = join(dir, "python.safetensors");
    await writeFile(path, PYTHON_FILE);
    const file = await SafetensorsFile.open(path);
    expect(file.metadata).toEqual({ format: "pt", note: "written by python safetensors" });
    expect(file.names()).toEqual(["d", "h", "a.weight", "empty", "e", "b", "c", "f", "g"]);
    expect([...(await file.readFloat32("a.weight"))]).toEqual([-1, -0.5, 0, 0.5, 1, 1.5]);
    expect([...(await file.readFloat32("b"))]).toEqual([1, -2, 0.5, 3.140625]);
    expect([...(await file.readFloat32("c"))]).toEqual([1, 65504, 2 ** -24]);
    expect([...(await file.readFloat32("h"))]).toEqual([3.5]);
    expect([...((await file.read("d")) as BigInt64Array)]).toEqual([-1n, 2n ** 40n]);
    expect([...((await file.read("e")) as Int32Array)]).toEqual([7, -8]);
    expect([...(await file.read("f"))]).toEqual([0, 128, 255]);
    expect([...(await file.read("g"))]).toEqual([1, 0]);
    expect((await file.read("empty")).length).toBe(0);
    const a = file.get("a.weight");
    expect(a).toMatchObject({ path, dtype: "float32", shape: [2, 3], length: 24 });
    // The absolute offset is what ONNX external data needs: it must address the bytes in the raw file.
    expect(a.offset).toBe(8 + PYTHON_FILE.readUInt32LE(0) + 24);
    expect(PYTHON_FILE.readFloatLE(a.offset + 5 * 4)).toBe(1.5);
    await expect(file.readFloat32("d")).rejects.toThrow(/readTensorData/);
  });

  it("writes the same bytes as the Python library for the same tensors", () => {
    const ours = encodeSafetensors(pythonFileTensors(), {
      metadata: { format: "pt", note: "written by python safetensors" },
    });
    expect(Buffer.from(ours).equals(PYTHON_FILE)).toBe(true);
  });
});

describe("safetensors writer", () => {
  it("round-trips every dtype through a file, with aligned data and a padded header", async () => {
    const path = join(dir, "round.safetensors");
    const tensors = pythonFileTensors();
    tensors["odd name/0"] = { dtype: "uint8", shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) };
    await writeSafetensors(path, tensors, { metadata: { step: "12" } });
    const file = await SafetensorsFile.open(path);
    expect(file.headerLength % 8).toBe(0);
    expect(file.metadata).toEqual({ step: "12" });
    expect(file.names().sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const info = file.get(name);
      expect(info.dtype).toBe(t.dtype);
      expect(info.shape).toEqual(t.shape);
      expect(info.offset % DTYPE_BYTES[t.dtype]).toBe(0);
      const bytes = await file.readBytes(name);
      expect(
        Buffer.from(bytes).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
      ).toBe(true);
    }
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("stores float32 as bfloat16 within half a bfloat16 step", async () => {
    const values = new Float32Array([0.1, -1234.5678, 3e-20, 1 / 3]);
    const path = join(dir, "bf16.safetensors");
    await writeSafetensors(path, { w: { dtype: "bfloat16", shape: [4], data: float32ToBfloat16(values) } });
    const back = await (await SafetensorsFile.open(path)).readFloat32("w");
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number;
      // One bfloat16 step at v is 2^(exponent - 7); rounding may move at most half of it.
      const step = 2 ** (Math.floor(Math.log2(Math.abs(v))) - 7);
      expect(Math.abs((back[i] as number) - v)).toBeLessThanOrEqual(step / 2);
    }
    expect(back[0]).toBe(bfloat16BitsToFloat32(0x3dcd));
  });

  it("rejects inconsistent tensors before writing anything", async () => {
    const cases: [Record<string, WritableTensor>, RegExp][] = [
      [
        { w: { dtype: "float32", shape: [3], data: new Float32Array(2) } },
        /needs 12 bytes, but the data has 8/,
      ],
      [
        { w: { dtype: "int32", shape: [2], data: new Float32Array(2) } },
        /Float32Array, but int32 takes a Int32Array/,
      ],
      [{ w: { dtype: "float32", shape: [1.5], data: new Float32Array(2) } }, /non-negative integers/],
      [{ __metadata__: { dtype: "uint8", shape: [0], data: new Uint8Array() } }, /reserved/],
    ];
    for (const [tensors, message] of cases) {
      const path = join(dir, "bad.safetensors");
      const err = await writeSafetensors(path, tensors).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as SafetensorsError).code).toBe("invalid-input");
      expect((err as Error).message).toMatch(message);
      await expect(stat(path)).rejects.toThrow();
    }
    const dup = [
      ["x", { dtype: "uint8", shape: [0], data: new Uint8Array() }],
      ["x", { dtype: "uint8", shape: [0], data: new Uint8Array() }],
    ] as const;
    expect(() => encodeSafetensors(dup)).toThrow(/unique/);
    expect(() => encodeSafetensors({}, { metadata: { n: 3 } as unknown as Record<string, string> })).toThrow(
      /must be strings/,
    );
  });

  it("accepts raw bytes for any dtype", () => {
    const raw = new Uint8Array(new Float32Array([2]).buffer);
    const bytes = encodeSafetensors({ w: { dtype: "float32", shape: [1], data: raw } });
    expect(new Float32Array(bytes.slice(-4).buffer)[0]).toBe(2);
  });
});

describe("safetensors header validation", () => {
  const cases: [string, string, number, SafetensorsErrorCode, RegExp][] = [
    ["not json", "{nope", 0, "header-invalid", /not valid JSON/],
    ["array", "[1,2]", 0, "header-invalid", /not a JSON object/],
    [
      "unknown dtype",
      '{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}',
      1,
      "unknown-dtype",
      /F8_E4M3/,
    ],
    [
      "prototype dtype",
      '{"w":{"dtype":"constructor","shape":[1],"data_offsets":[0,1]}}',
      1,
      "unknown-dtype",
      /constructor/,
    ],
    ["float shape", '{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', 1, "tensor-invalid", /shape/],
    [
      "negative shape",
      '{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}',
      1,
      "tensor-invalid",
      /shape/,
    ],
    ["string shape", '{"w":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}', 1, "tensor-invalid", /shape/],
    [
      "bad offsets",
      '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}',
      1,
      "tensor-invalid",
      /data_offsets/,
    ],
    [
      "reversed offsets",
      '{"w":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}',
      1,
      "tensor-invalid",
      /end before/,
    ],
    [
      "beyond file",
      '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}',
      8,
      "out-of-range",
      /past the 8 data bytes/,
    ],
    [
      "size mismatch",
      '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}',
      8,
      "size-mismatch",
      /needs 12 bytes/,
    ],
    [
      "overlap",
      '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}',
      6,
      "overlap",
      /overlap those of tensor "a"/,
    ],
    [
      "gap",
      '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}',
      6,
      "out-of-range",
      /no gaps/,
    ],
    [
      "trailing bytes",
      '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}',
      5,
      "out-of-range",
      /cover 2 data bytes/,
    ],
    [
      "huge numel",
      '{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}',
      8,
      "size-mismatch",
      /2\^53/,
    ],
    ["metadata not strings", '{"__metadata__":{"step":3}}', 0, "metadata-invalid", /step/],
    ["metadata array", '{"__metadata__":["x"]}', 0, "metadata-invalid", /__metadata__/],
  ];
  for (const [label, header, dataBytes, code, message] of cases) {
    it(`refuses ${label}, naming the file`, async () => {
      const path = await rawFile(`${label.replaceAll(" ", "-")}.safetensors`, header, dataBytes);
      const err = await openError(path);
      expect(err.code).toBe(code);
      expect(err.file).toBe(path);
      expect(err.message).toContain(path);
      expect(err.message).toMatch(message);
    });
  }

  it("names the tensor at fault", async () => {
    const path = await rawFile(
      "named.safetensors",
      '{"ok":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"bad":{"dtype":"X"}}',
      1,
    );
    const err = await openError(path);
    expect(err.tensor).toBe("bad");
    expect(err.message).toContain('tensor "bad"');
  });

  it("refuses header lengths beyond the file or the size limit, and files too short for a length", async () => {
    const short = join(dir, "short.safetensors");
    await writeFile(short, Buffer.from([1, 2, 3]));
    expect((await openError(short)).code).toBe("truncated");

    const lying = join(dir, "lying.safetensors");
    const buf = Buffer.alloc(16);
    buf.writeBigUInt64LE(2n ** 63n, 0);
    await writeFile(lying, buf);
    expect((await openError(lying)).message).toMatch(/declares a header of 9223372036854775808 bytes/);

    const big = await rawFile("big.safetensors", `{}${" ".repeat(200)}`);
    const err = await SafetensorsFile.open(big, { maxHeaderBytes: 100 }).catch((e: unknown) => e);
    expect((err as SafetensorsError).code).toBe("header-too-large");
    expect((await SafetensorsFile.open(big)).tensors.size).toBe(0);
  });

  it("refuses invalid UTF-8 in the header", async () => {
    const path = await rawFile("utf8.safetensors", '{"\u00e9":{}}');
    const bytes = await readFile(path);
    bytes[bytes.indexOf(0xc3)] = 0xff;
    await writeFile(path, bytes);
    expect((await openError(path)).message).toMatch(/UTF-8/);
  });

  it("reports a file truncated after its header was read", async () => {
    const path = join(dir, "shrinks.safetensors");
    await writeSafetensors(path, { w: { dtype: "float32", shape: [64], data: new Float32Array(64) } });
    const file = await SafetensorsFile.open(path);
    const full = await readFile(path);
    await writeFile(path, full.subarray(0, full.length - 10));
    const err = await file.readBytes("w").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe("truncated");
    expect((err as SafetensorsError).tensor).toBe("w");
  });

  it("says which tensor is missing and which names exist", async () => {
    const path = join(dir, "few.safetensors");
    await writeSafetensors(path, { "a.weight": { dtype: "uint8", shape: [1], data: new Uint8Array(1) } });
    const file = await SafetensorsFile.open(path);
    expect(() => file.get("a.wieght")).toThrow(/no tensor "a.wieght".*"a.weight"/);
    await expect(readTensorBytes({ ...file.get("a.weight"), path: join(dir, "gone") })).rejects.toThrow(
      /cannot open/,
    );
  });
});

describe("files beyond 4 GiB", () => {
  // A sparse file takes no disk space on Linux and macOS filesystems; elsewhere it could write 4.5 GB.
  it.runIf(process.platform === "linux" || process.platform === "darwin")(
    "addresses and reads a tensor that starts past 2^32 bytes",
    async () => {
      const { open, truncate } = await import("node:fs/promises");
      const pad = 2 ** 32 + 2 ** 29;
      const header = JSON.stringify({
        pad: { dtype: "U8", shape: [pad], data_offsets: [0, pad] },
        w: { dtype: "F32", shape: [2], data_offsets: [pad, pad + 8] },
      });
      const path = await rawFile("huge.safetensors", header);
      const end = 8 + Buffer.byteLength(header) + pad + 8;
      await truncate(path, end);
      const handle = await open(path, "r+");
      await handle.write(new Uint8Array(new Float32Array([1.25, -7]).buffer), 0, 8, end - 8);
      await handle.close();
      const file = await SafetensorsFile.open(path);
      const w = file.get("w");
      expect(w.offset).toBe(end - 8);
      expect(w.offset).toBeGreaterThan(2 ** 32);
      expect([...(await file.readFloat32("w"))]).toEqual([1.25, -7]);
      await rm(path);
    },
  );
});

describe("sharded checkpoints", () => {
  async function shards(folder: string, index: object): Promise<string> {
    const { mkdir } = await import("node:fs/promises");
    await mkdir(folder, { recursive: true });
    await writeSafetensors(join(folder, "model-00001-of-00002.safetensors"), {
      "x.weight": { dtype: "float32", shape: [2], data: new Float32Array([1, 2]) },
      "x.bias": { dtype: "float32", shape: [1], data: new Float32Array([3]) },
    });
    await writeSafetensors(join(folder, "model-00002-of-00002.safetensors"), {
      "y.weight": { dtype: "bfloat16", shape: [1], data: new Uint16Array([0x4000]) },
    });
    const path = join(folder, "model.safetensors.index.json");
    await writeFile(path, JSON.stringify(index));
    return path;
  }
  const weightMap = {
    "x.weight": "model-00001-of-00002.safetensors",
    "x.bias": "model-00001-of-00002.safetensors",
    "y.weight": "model-00002-of-00002.safetensors",
  };

  it("merges the shards behind one lookup", async () => {
    const path = await shards(join(dir, "sharded"), { metadata: { total_size: 14 }, weight_map: weightMap });
    const ckpt = await openSafetensors(path);
    expect(ckpt.files.length).toBe(2);
    expect(ckpt.indexMetadata).toEqual({ total_size: 14 });
    expect(ckpt.names().sort()).toEqual(["x.bias", "x.weight", "y.weight"]);
    expect(ckpt.get("y.weight").path).toBe(join(dir, "sharded", "model-00002-of-00002.safetensors"));
    expect([...(await ckpt.readFloat32("y.weight"))]).toEqual([2]);
    expect([...(await ckpt.readFloat32("x.weight"))]).toEqual([1, 2]);
    const single = await openSafetensors(join(dir, "sharded", "model-00001-of-00002.safetensors"));
    expect(single.names().sort()).toEqual(["x.bias", "x.weight"]);
  });

  it("names every missing shard", async () => {
    const path = await shards(join(dir, "missing"), {
      weight_map: { ...weightMap, "z.weight": "model-00003-of-00003.safetensors" },
    });
    const err = await openSafetensors(path).catch((e: unknown) => e);
    expect((err as SafetensorsError).code).toBe("missing-shard");
    expect((err as Error).message).toMatch(/1 of 3 shards are missing.*model-00003-of-00003\.safetensors/);
  });

  it("refuses an index that disagrees with its shards or points outside its folder", async () => {
    const wrong = await shards(join(dir, "wrong"), {
      weight_map: { ...weightMap, "x.bias": "model-00002-of-00002.safetensors" },
    });
    await expect(openSafetensors(wrong)).rejects.toThrow(
      /puts this tensor in model-00002-of-00002.safetensors/,
    );
    const escaping = await shards(join(dir, "escape"), {
      weight_map: { "x.weight": "../sharded/x.safetensors" },
    });
    await expect(openSafetensors(escaping)).rejects.toThrow(/not a file name inside/);
    const notIndex = await shards(join(dir, "notindex"), { weights: {} });
    await expect(openSafetensors(notIndex)).rejects.toThrow(/no "weight_map"/);
  });
});

describe("reference fixtures", () => {
  const root = process.env.EDIT_R1_FIXTURES ?? fileURLToPath(new URL("../../../fixtures", import.meta.url));

  it("parses every fixture's weights (all float32) and io files, readable at their offsets", async () => {
    const dirs = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory());
    let checked = 0;
    for (const d of dirs) {
      for (const fileName of ["weights.safetensors", "io.safetensors"]) {
        const path = join(root, d.name, fileName);
        if (!(await stat(path).catch(() => undefined))) continue;
        const file = await SafetensorsFile.open(path);
        expect(file.tensors.size, path).toBeGreaterThan(0);
        let covered = 0;
        for (const info of file.tensors.values()) {
          // Model inputs include integer masks; the weights themselves are all float32.
          if (fileName === "weights.safetensors") expect(info.dtype, `${path} ${info.name}`).toBe("float32");
          covered += info.length;
        }
        expect(covered).toBe(file.size - 8 - file.headerLength);
        const first = [...file.tensors.values()].find((t) => t.dtype === "float32" && t.length > 0);
        if (first) {
          const values = await file.readFloat32(first.name);
          expect(values.every(Number.isFinite)).toBe(true);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });
});
