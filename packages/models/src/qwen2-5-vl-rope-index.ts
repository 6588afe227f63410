import { ModelConfigError } from "./model-config-error.js";
import type { Qwen25VLConfig } from "./qwen2-5-vl-config.js";

/** (t, h, w) of one image in patches, as the image processor's `image_grid_thw` row. */
export type Qwen25VLImageGrid = readonly [number, number, number];

/** M-RoPE positions of one token row. */
export interface Qwen25VLRopeIndex {
  /** [3, L] row-major: the t, h and w positions of every token. */
  positionIds: Int32Array;
  /** max position + 1 − L: where generation would continue (transformers' `rope_deltas`). */
  ropeDelta: number;
}

type RopeConfig = Pick<Qwen25VLConfig, "imageTokenId" | "visionStartTokenId"> & {
  vision: Pick<Qwen25VLConfig["vision"], "spatialMergeSize">;
};

/**
 * transformers' `Qwen2_5_VLModel.get_rope_index` for one row of ids and the grids of that row's images, in
 * order (images only; no video). Text tokens count up on all three axes; the image whose first
 * `<|image_pad|>` sits at position s gets (s, s + row, s + column) over its merged grid (t is 0 for every
 * frame of an image); text after it resumes at s + max(merged h, merged w). An image is a
 * `<|vision_start|>` followed by `<|image_pad|>`; its t·h·w/merge² pad tokens take the next grid.
 *
 * With `attentionMask` (1 = token, 0 = padding), positions run over the kept tokens only, padding gets
 * position 1 on every axis, and the delta is taken over the kept tokens against the full row length, as
 * transformers does. Without grids (no images), positions count up over the kept tokens (transformers'
 * text-only branch). Throws a ModelConfigError when the row's image tokens do not match the grids.
 */
export function qwen25VLRopeIndex(
  inputIds: ArrayLike<number>,
  imageGrids: readonly Qwen25VLImageGrid[],
  config: RopeConfig,
  attentionMask?: ArrayLike<number>,
): Qwen25VLRopeIndex {
  const length = inputIds.length;
  if (attentionMask && attentionMask.length !== length) {
    throw new ModelConfigError(
      `qwen25VLRopeIndex: attention mask has ${attentionMask.length} entries for ${length} ids`,
    );
  }
  const kept: number[] = [];
  for (let i = 0; i < length; i++) if (!attentionMask || Number(attentionMask[i]) === 1) kept.push(i);
  const ids = kept.map((i) => Number(inputIds[i]));
  const positions = new Int32Array(3 * length).fill(1);
  const set = (k: number, t: number, h: number, w: number) => {
    const at = kept[k]!;
    positions[at] = t;
    positions[length + at] = h;
    positions[2 * length + at] = w;
  };

  if (imageGrids.length === 0) {
    if (countImages(ids, config) > 0) {
      throw new ModelConfigError("qwen25VLRopeIndex: the ids hold an image but no grid was given");
    }
    for (let k = 0; k < ids.length; k++) set(k, k, k, k);
    // transformers' text-only branch: without a mask the delta is 0; with one, it is taken over the whole
    // row, padding's 1 included.
    let max = 0;
    for (const p of positions) max = Math.max(max, p);
    return { positionIds: positions, ropeDelta: attentionMask && length > 0 ? max + 1 - length : 0 };
  }

  const merge = config.vision.spatialMergeSize;
  const images = countImages(ids, config);
  if (images !== imageGrids.length) {
    throw new ModelConfigError(
      `qwen25VLRopeIndex: the ids hold ${images} image(s) (<|vision_start|> followed by <|image_pad|>) ` +
        `but ${imageGrids.length} grid(s) were given`,
    );
  }
  const pads = ids.filter((id) => id === config.imageTokenId).length;
  const needed = imageGrids.reduce((n, [t, h, w]) => n + (t * h * w) / (merge * merge), 0);
  if (pads !== needed) {
    throw new ModelConfigError(
      `qwen25VLRopeIndex: the ids hold ${pads} <|image_pad|> tokens but the grids ` +
        `${imageGrids.map((g) => `[${g.join(", ")}]`).join(" ")} need ${needed} (t·h·w / ${merge * merge} each)`,
    );
  }
  let k = 0; // next token (index into ids)
  let next = 0; // next free position
  let max = -1;
  for (const [n, [t, h, w]] of imageGrids.entries()) {
    if (h % merge !== 0 || w % merge !== 0) {
      throw new ModelConfigError(
        `qwen25VLRopeIndex: grid [${t}, ${h}, ${w}] is not a multiple of spatial_merge_size ${merge}`,
      );
    }
    const first = ids.indexOf(config.imageTokenId, k);
    for (; k < first; k++, next++) set(k, next, next, next);
    const gh = h / merge;
    const gw = w / merge;
    const count = t * gh * gw;
    for (let j = 0; j < count; j++) {
      if (ids[k + j] !== config.imageTokenId) {
        throw new ModelConfigError(
          `qwen25VLRopeIndex: image ${n + 1} of grid ` +
            `[${t}, ${h}, ${w}] needs ${count} consecutive <|image_pad|> tokens; token ${kept[k + j] ?? length} is not one`,
        );
      }
      const cell = j % (gh * gw);
      const row = Math.floor(cell / gw);
      const col = cell % gw;
      set(k + j, next, next + row, next + col);
    }
    k += count;
    next += Math.max(gh, gw, 1);
  }
  for (; k < ids.length; k++, next++) set(k, next, next, next);
  for (let i = 0; i < ids.length; i++) {
    const at = kept[i]!;
    max = Math.max(max, positions[at]!, positions[length + at]!, positions[2 * length + at]!);
  }
  return { positionIds: positions, ropeDelta: max + 1 - length };
}

/**
 * `qwen25VLRopeIndex` over a batch: the grids are those of `image_grid_thw`, all rows' images in order, and
 * each row takes as many as it holds. Returns positions [3, B, L] row-major and one delta per row.
 */
export function qwen25VLRopeIndexBatch(
  rows: readonly ArrayLike<number>[],
  imageGrids: readonly Qwen25VLImageGrid[],
  config: RopeConfig,
  attentionMasks?: readonly ArrayLike<number>[],
): { positionIds: Int32Array; ropeDeltas: number[] } {
  const length = rows[0]?.length ?? 0;
  const batch = rows.length;
  const positionIds = new Int32Array(3 * batch * length);
  const ropeDeltas: number[] = [];
  let used = 0;
  rows.forEach((ids, b) => {
    if (ids.length !== length) {
      throw new ModelConfigError(
        `qwen25VLRopeIndexBatch: row ${b} has ${ids.length} ids, row 0 has ${length}`,
      );
    }
    const mask = attentionMasks?.[b];
    const kept: number[] = [];
    for (let i = 0; i < length; i++) if (!mask || Number(mask[i]) === 1) kept.push(Number(ids[i]));
    const images = countImages(kept, config);
    const grids = imageGrids.slice(used, used + images);
    if (grids.length !== images) {
      throw new ModelConfigError(
        `qwen25VLRopeIndexBatch: the rows hold more images than the ${imageGrids.length} grid(s) given`,
      );
    }
    used += images;
    const r = qwen25VLRopeIndex(ids, grids, config, mask);
    for (let a = 0; a < 3; a++) {
      positionIds.set(r.positionIds.subarray(a * length, (a + 1) * length), (a * batch + b) * length);
    }
    ropeDeltas.push(r.ropeDelta);
  });
  if (used !== imageGrids.length) {
    throw new ModelConfigError(
      `qwen25VLRopeIndexBatch: ${imageGrids.length} grid(s) given but the rows hold ${used} image(s)`,
    );
  }
  return { positionIds, ropeDeltas };
}

/** Images in a row of (kept) ids: `<|vision_start|>` directly followed by `<|image_pad|>`. */
function countImages(ids: readonly number[], config: RopeConfig): number {
  let n = 0;
  for (let k = 0; k + 1 < ids.length; k++) {
    if (ids[k] === config.visionStartTokenId && ids[k + 1] === config.imageTokenId) n++;
  }
  return n;
}
