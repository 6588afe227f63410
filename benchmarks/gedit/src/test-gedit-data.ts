/**
 * Test helper: writes a tiny GEdit-Bench in its Hub on-disk format (parquet shards under data/ in a
 * dataset cache snapshot, image columns as { bytes, path } structs of PNG bytes, the capitalised
 * Intersection_exist, "en"/"cn" languages, the datasets library's "huggingface" schema metadata).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodePng, type RgbImage } from "@edit-r1/core";
import { parquetWriteBuffer } from "hyparquet-writer";

export interface TinyRow {
  task_type: string;
  key: string;
  instruction: string;
  instruction_language: string;
  /** Pre-resized source; null writes a row without image bytes. */
  input_image: RgbImage | null;
  input_image_raw: RgbImage | null;
  Intersection_exist: boolean;
}

export function solid(width: number, height: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return { width, height, data };
}

const FEATURES = {
  task_type: { dtype: "string", _type: "Value" },
  key: { dtype: "string", _type: "Value" },
  instruction: { dtype: "string", _type: "Value" },
  instruction_language: { dtype: "string", _type: "Value" },
  input_image: { _type: "Image" },
  input_image_raw: { _type: "Image" },
  Intersection_exist: { dtype: "bool", _type: "Value" },
};

async function imageCell(image: RgbImage | null): Promise<{ bytes: Uint8Array | null; path: string | null }> {
  return image === null ? { bytes: null, path: null } : { bytes: await encodePng(image), path: null };
}

/** One parquet file of `rows`, as the datasets library writes it (several small row groups). */
export async function parquetOf(rows: readonly TinyRow[]): Promise<Uint8Array> {
  const strings = (name: keyof TinyRow) => ({ name, data: rows.map((r) => r[name] as string) });
  const images = async (name: "input_image" | "input_image_raw") => ({
    name,
    data: await Promise.all(rows.map((r) => imageCell(r[name]))),
  });
  const columnData = [
    strings("task_type"),
    strings("key"),
    strings("instruction"),
    strings("instruction_language"),
    await images("input_image"),
    await images("input_image_raw"),
    { name: "Intersection_exist", data: rows.map((r) => r.Intersection_exist) },
  ];
  const string = (name: string) => ({
    name,
    type: "BYTE_ARRAY",
    converted_type: "UTF8",
    repetition_type: "OPTIONAL",
  });
  const image = (name: string) => [
    { name, repetition_type: "OPTIONAL", num_children: 2 },
    { name: "bytes", type: "BYTE_ARRAY", repetition_type: "OPTIONAL" },
    { name: "path", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  ];
  const schema = [
    { name: "schema", num_children: 7 },
    string("task_type"),
    string("key"),
    string("instruction"),
    string("instruction_language"),
    ...image("input_image"),
    ...image("input_image_raw"),
    { name: "Intersection_exist", type: "BOOLEAN", repetition_type: "OPTIONAL" },
  ];
  const buffer = parquetWriteBuffer({
    // biome-ignore lint/suspicious/noExplicitAny: hyparquet-writer's column and schema types are loose JS shapes
    columnData: columnData as any,
    // biome-ignore lint/suspicious/noExplicitAny: see above
    schema: schema as any,
    rowGroupSize: 2,
    kvMetadata: [{ key: "huggingface", value: JSON.stringify({ info: { features: FEATURES } }) }],
  });
  return new Uint8Array(buffer);
}

export const GEDIT_COMMIT = "fedcba9876543210fedcba9876543210fedcba98";

/** A Hub cache holding `stepfun-ai/GEdit-Bench` with `rows` split over `shards` parquet files. */
export async function writeTinyGEditCache(rows: readonly TinyRow[], shards = 2): Promise<string> {
  const cache = mkdtempSync(join(tmpdir(), "gedit-cache-"));
  const repo = join(cache, "datasets--stepfun-ai--GEdit-Bench");
  const dataDir = join(repo, "snapshots", GEDIT_COMMIT, "data");
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(join(repo, "refs"), { recursive: true });
  writeFileSync(join(repo, "refs", "main"), GEDIT_COMMIT);
  const per = Math.ceil(rows.length / shards);
  for (let s = 0; s < shards; s++) {
    const name = `train-${String(s).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.parquet`;
    writeFileSync(join(dataDir, name), await parquetOf(rows.slice(s * per, (s + 1) * per)));
  }
  return cache;
}
