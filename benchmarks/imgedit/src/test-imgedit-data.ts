/**
 * Test helper: writes a tiny ImgEdit-Bench Basic suite in the real on-disk format (an object keyed by
 * string-integer ids, `id` paths relative to the image folder, JPEG originals, a folder name with a
 * space as in the real "daily object/") and test Editors.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Editor, EditRequest, RgbImage } from "@edit-r1/core";
import sharp from "sharp";

export function patternImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 9 + seed * 37) & 255;
      data[i + 1] = (y * 7 + seed * 11) & 255;
      data[i + 2] = ((x ^ y) * 3 + seed * 23) & 255;
    }
  }
  return { width, height, data };
}

export async function jpegOf(image: RgbImage): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .jpeg({ quality: 95 })
    .toBuffer();
}

export interface TinyEntry {
  id: string;
  prompt: string;
  edit_type: string;
}

/** A default suite: one or two entries per category, two sharing a source image. */
export const TINY_ENTRIES: Record<string, TinyEntry> = {
  "22": { id: "for_add/000001.jpg", prompt: "Add a red ball on the grass.", edit_type: "add" },
  "23": { id: "for_add/000001.jpg", prompt: "Add a small dog next to the tree.", edit_type: "add" },
  "101": { id: "daily object/000002.jpg", prompt: "Change the cup's colour to blue.", edit_type: "adjust" },
  "150": { id: "animal/000003.jpg", prompt: "Extract the cat.", edit_type: "extract" },
  "210": { id: "transport/000004.jpg", prompt: "Replace the car with a bicycle.", edit_type: "replace" },
  "300": { id: "human/000005.jpg", prompt: "Remove the hat.", edit_type: "remove" },
  "410": { id: "architecture/000006.jpg", prompt: "Put the house on a beach.", edit_type: "background" },
  "520": { id: "style/000007.jpg", prompt: "Turn it into a watercolour painting.", edit_type: "style" },
  "600": {
    id: "compose/objects/000008.jpg",
    prompt: "Remove the vase and make the table red.",
    edit_type: "compose",
  },
  "700": { id: "human/000009.jpg", prompt: "Make the man raise his arms.", edit_type: "action" },
};

/**
 * Writes `basic_edit.json` and the JPEG images into `dir` (a new temp folder by default). Entries whose
 * image path is listed in `skipImages` get no file.
 */
export async function writeTinyImgEdit(
  options: { dir?: string; entries?: Record<string, TinyEntry>; skipImages?: string[] } = {},
): Promise<{ dir: string; entries: Record<string, TinyEntry>; images: Map<string, RgbImage> }> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "imgedit-data-"));
  const entries = options.entries ?? TINY_ENTRIES;
  const images = new Map<string, RgbImage>();
  let seed = 1;
  for (const entry of Object.values(entries)) {
    if (images.has(entry.id) || options.skipImages?.includes(entry.id)) continue;
    const image = patternImage(24 + (seed % 3) * 4, 20, seed++);
    images.set(entry.id, image);
    const path = join(dir, entry.id);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, await jpegOf(image));
  }
  writeFileSync(join(dir, "basic_edit.json"), JSON.stringify(entries, null, 4));
  return { dir, entries, images };
}

/** An Editor that inverts the source's colours and counts the requests it saw. */
export function invertingEditor(protocol: Record<string, unknown> = { steps: 1, seed: 0 }): Editor & {
  seen: string[];
} {
  const seen: string[] = [];
  return {
    name: "test-invert",
    protocol,
    seen,
    async edit(requests: readonly EditRequest[]) {
      return requests.map((r) => {
        seen.push(r.key);
        return { width: r.source.width, height: r.source.height, data: r.source.data.map((v) => 255 - v) };
      });
    },
  };
}
