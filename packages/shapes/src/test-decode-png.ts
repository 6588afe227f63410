import { inflateSync } from "node:zlib";
import type { RgbImage } from "./rgb-image.js";

/**
 * Test helper: decodes the PNGs encodePng writes (8-bit RGB, filter 0) independently of it,
 * checking the signature and every chunk's CRC with zlib's own deflate stream reader.
 */
export function decodeSimplePng(bytes: Uint8Array, crc: (b: Uint8Array) => number): RgbImage {
  const buf = Buffer.from(bytes);
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (!signature.every((b, i) => buf[i] === b)) throw new Error("bad PNG signature");
  let offset = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  let ended = false;
  while (offset < buf.length) {
    const length = buf.readUInt32BE(offset);
    const type = buf.toString("latin1", offset + 4, offset + 8);
    const body = buf.subarray(offset + 8, offset + 8 + length);
    if (crc(buf.subarray(offset + 4, offset + 8 + length)) !== buf.readUInt32BE(offset + 8 + length)) {
      throw new Error(`bad CRC in ${type}`);
    }
    if (type === "IHDR") {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      if (body[8] !== 8 || body[9] !== 2) throw new Error("not 8-bit RGB");
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") ended = true;
    offset += 12 + length;
  }
  if (!ended) throw new Error("no IEND");
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    if (raw[y * (stride + 1)] !== 0) throw new Error("unexpected filter");
    data.set(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)), y * stride);
  }
  return { width, height, data };
}
