import { stat } from "node:fs/promises";
import * as zlib from "node:zlib";
import { asyncBufferFromFile, type Compressors, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { DataFileError } from "./data-file-error.js";

export interface ReadParquetOptions {
  /** Only these columns (default all). */
  columns?: string[];
  /** First row to read (default 0). */
  rowStart?: number;
  /** One past the last row to read (default the end). */
  rowEnd?: number;
}

/** One row as a plain object: strings, numbers, booleans, bigint (INT64), Uint8Array (binary), nested objects/arrays, null. */
export type ParquetRow = Record<string, unknown>;

/**
 * Reads rows of a Parquet file (as the Hub serves data sets such as GEdit-Bench) into plain objects.
 * Binary columns stay bytes: Hugging Face image columns arrive as `{ bytes: Uint8Array, path }`.
 * Snappy, gzip, brotli and uncompressed files are read everywhere; zstd needs a Node with
 * `zlib.zstdDecompressSync` (22.15 and later), else it gives a DataFileError saying so.
 */
export async function readParquetRows(path: string, options: ReadParquetOptions = {}): Promise<ParquetRow[]> {
  const file = await open(path);
  try {
    return (await parquetReadObjects({
      file,
      // Without this, hyparquet decodes un-annotated binary (image bytes) as UTF-8 text, destroying it.
      utf8: false,
      compressors: COMPRESSORS,
      ...(options.columns ? { columns: options.columns } : {}),
      ...(options.rowStart !== undefined ? { rowStart: options.rowStart } : {}),
      ...(options.rowEnd !== undefined ? { rowEnd: options.rowEnd } : {}),
    })) as ParquetRow[];
  } catch (cause) {
    const message = (cause as Error).message;
    const hint = /ZSTD/.test(message)
      ? " This Node has no zstd; use Node 22.15+ or convert the file to snappy."
      : "";
    throw new DataFileError(path, `cannot decode as Parquet (${message}).${hint}`, { cause });
  }
}

/** The number of rows, from the file footer alone (to page through a large file with rowStart/rowEnd). */
export async function parquetRowCount(path: string): Promise<number> {
  const file = await open(path);
  try {
    return Number((await parquetMetadataAsync(file)).num_rows);
  } catch (cause) {
    throw new DataFileError(path, `cannot read the Parquet footer (${(cause as Error).message}).`, { cause });
  }
}

// hyparquet decodes snappy itself; the other codecs come from Node's zlib, so no extra dependency.
const zstd = (zlib as { zstdDecompressSync?: (input: Uint8Array) => Uint8Array }).zstdDecompressSync;
const COMPRESSORS: Compressors = {
  GZIP: (input) => zlib.gunzipSync(input),
  BROTLI: (input) => zlib.brotliDecompressSync(input),
  ...(zstd ? { ZSTD: (input: Uint8Array) => zstd(input) } : {}),
};

async function open(path: string) {
  const s = await stat(path).catch((cause: unknown) => {
    throw new DataFileError(path, `cannot read (${(cause as Error).message}).`, { cause });
  });
  if (!s.isFile()) throw new DataFileError(path, "is not a file.");
  return asyncBufferFromFile(path);
}
