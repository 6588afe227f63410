import { closeSync, openSync, readSync } from "node:fs";
import { EditR1Error } from "./errors.js";

/** A file that is not a 64-bit little-endian ELF shared object, or a truncated one. */
export class ElfError extends EditR1Error {
  override name = "ElfError";
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_RUNPATH = 29n;
const DT_RPATH = 15n;

/** What a shared library asks the dynamic linker for. */
export interface ElfDependencies {
  /** DT_NEEDED entries in order, e.g. ["libcublas.so.12", "libcudnn.so.9", …]. */
  needed: string[];
  /** DT_RUNPATH or DT_RPATH, split on ":" (e.g. ["$ORIGIN"]). */
  runpath: string[];
}

/**
 * Reads the DT_NEEDED and DT_RUNPATH entries of an ELF64 little-endian shared library (Linux x86-64/arm64) by
 * reading only the headers and the dynamic section, so a library of hundreds of megabytes costs a few reads.
 * The string table is located through the PT_LOAD segment that maps its address.
 */
export function readElfDependencies(file: string): ElfDependencies {
  const fd = openSync(file, "r");
  try {
    const read = (offset: number, length: number): Buffer => {
      const b = Buffer.alloc(length);
      const n = readSync(fd, b, 0, length, offset);
      if (n !== length) throw new ElfError(`${file}: truncated ELF (wanted ${length} bytes at ${offset})`);
      return b;
    };
    const ident = read(0, 64);
    if (ident.readUInt32BE(0) !== 0x7f454c46) throw new ElfError(`${file}: not an ELF file`);
    if (ident[4] !== 2 || ident[5] !== 1)
      throw new ElfError(`${file}: only 64-bit little-endian ELF is supported`);
    const phoff = Number(ident.readBigUInt64LE(32));
    const phentsize = ident.readUInt16LE(54);
    const phnum = ident.readUInt16LE(56);
    const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
    let dynamic: { offset: number; size: number } | undefined;
    const ph = read(phoff, phentsize * phnum);
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      const type = ph.readUInt32LE(at);
      const offset = ph.readBigUInt64LE(at + 8);
      const vaddr = ph.readBigUInt64LE(at + 16);
      const filesz = ph.readBigUInt64LE(at + 32);
      if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
      if (type === PT_DYNAMIC) dynamic = { offset: Number(offset), size: Number(filesz) };
    }
    if (!dynamic) return { needed: [], runpath: [] };
    const dyn = read(dynamic.offset, dynamic.size);
    const neededOffsets: bigint[] = [];
    const runpathOffsets: bigint[] = [];
    let strtab: bigint | undefined;
    for (let at = 0; at + 16 <= dyn.length; at += 16) {
      const tag = dyn.readBigInt64LE(at);
      const val = dyn.readBigUInt64LE(at + 8);
      if (tag === DT_NULL) break;
      if (tag === DT_NEEDED) neededOffsets.push(val);
      else if (tag === DT_STRTAB) strtab = val;
      else if (tag === DT_RUNPATH || tag === DT_RPATH) runpathOffsets.push(val);
    }
    if (strtab === undefined) throw new ElfError(`${file}: dynamic section without a string table`);
    const seg = loads.find((l) => strtab! >= l.vaddr && strtab! < l.vaddr + l.filesz);
    if (!seg) throw new ElfError(`${file}: the string table's address is in no loaded segment`);
    const strtabOffset = Number(strtab - seg.vaddr + seg.offset);
    const str = (off: bigint): string => {
      const chunks: Buffer[] = [];
      let pos = strtabOffset + Number(off);
      for (;;) {
        const chunk = Buffer.alloc(256);
        const n = readSync(fd, chunk, 0, 256, pos);
        if (n === 0) throw new ElfError(`${file}: unterminated string in the dynamic string table`);
        const b = chunk.subarray(0, n);
        const end = b.indexOf(0);
        if (end >= 0) {
          chunks.push(b.subarray(0, end));
          return Buffer.concat(chunks).toString("utf8");
        }
        chunks.push(b);
        pos += n;
      }
    };
    return {
      needed: neededOffsets.map(str),
      runpath: runpathOffsets.flatMap((o) => str(o).split(":")).filter((p) => p !== ""),
    };
  } finally {
    closeSync(fd);
  }
}

/** The major version in a versioned soname: "libcudart.so.12" → 12; undefined for "libfoo.so". */
export function sonameMajor(soname: string): number | undefined {
  const m = /\.so\.(\d+)/.exec(soname);
  return m ? Number(m[1]) : undefined;
}
