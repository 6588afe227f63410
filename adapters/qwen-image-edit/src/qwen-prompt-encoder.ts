import type { RgbImage } from "@edit-r1/core";
import { type Device, Graph, ops, type Session, SessionCache } from "@edit-r1/engine";
import {
  buildQwen25VLEncoder,
  type ComputeDType,
  qwen2VLResizeAndPatch,
  qwen25VLRopeIndex,
} from "@edit-r1/models";
import { encodeQwenEditPrompt } from "./prompt.js";
import type { PromptEncoder, TextCondition } from "./qwen-image-edit-editor.js";
import { QwenImageEditError } from "./qwen-image-edit-error.js";
import type { QwenImageEditVariant, QwenTextEncoder } from "./qwen-image-edit-model.js";

/**
 * The pipelines' `encode_prompt`: the instruction in the edit template with the source images, through
 * Qwen2.5-VL; the last hidden state without the template's first 64 tokens (the system block) is the
 * transformer's text conditioning.
 */
export class QwenPromptEncoder implements PromptEncoder {
  private readonly sessions: SessionCache;

  constructor(
    private readonly encoder: QwenTextEncoder,
    private readonly variant: QwenImageEditVariant,
    private readonly options: {
      dtype?: ComputeDType | undefined;
      device?: Device | undefined;
      threads?: number | undefined;
      jointAttentionDim: number;
    },
  ) {
    this.sessions = new SessionCache({ device: options.device, threads: options.threads });
    if (encoder.config.hiddenSize !== options.jointAttentionDim) {
      throw new QwenImageEditError(
        `the text encoder's hidden size ${encoder.config.hiddenSize} differs from the transformer's ` +
          `joint_attention_dim ${options.jointAttentionDim}; text_encoder/ and transformer/ are from different models`,
      );
    }
  }

  close(): Promise<void> {
    return this.sessions.close();
  }

  /** Builds the encoder at a tiny size so that weights that do not fit the config fail early. */
  checkWeights(): void {
    const { config, weights } = this.encoder;
    const g = new Graph("check_qwen25vl");
    buildQwen25VLEncoder(g, config, weights, {
      inputIds: g.input("input_ids", "int64", [1, 1]),
      imageGrids: [],
      positionIds: new Int32Array(3),
    });
  }

  /**
   * The prompt with `images` (already at their VLM size) → hidden states after the system block, padded with a
   * mask to a multiple of `bucket` rows (the VLM itself runs on ids right-padded to a multiple of `bucket`,
   * which its causal attention makes exact).
   */
  async encode(prompt: string, images: readonly RgbImage[], bucket: number): Promise<TextCondition> {
    const { config, processor, tokenizer } = this.encoder;
    const patches = images.map((image) => qwen2VLResizeAndPatch(image, processor));
    const merge = config.vision.spatialMergeSize ** 2;
    const { inputIds, dropFirst } = encodeQwenEditPrompt(
      tokenizer,
      prompt,
      patches.map((p) => (p.grid[0] * p.grid[1] * p.grid[2]) / merge),
      this.variant,
      { imageTokenId: config.imageTokenId },
    );
    const length = inputIds.length;
    if (length <= dropFirst) {
      throw new QwenImageEditError(
        `the prompt template has ${length} tokens, fewer than the ${dropFirst} it drops`,
      );
    }
    const padded = Math.ceil(length / bucket) * bucket;
    const ids = new BigInt64Array(padded).fill(BigInt(tokenizer.padId));
    inputIds.forEach((id, i) => {
      ids[i] = BigInt(id);
    });
    const grids = patches.map((p) => p.grid);
    const { positionIds } = qwen25VLRopeIndex(Array.from(ids, Number), grids, config);
    const rows = patches.reduce((n, p) => n + p.pixelValues.length, 0);
    const pixels = new Float32Array(rows);
    let offset = 0;
    for (const p of patches) {
      pixels.set(p.pixelValues, offset);
      offset += p.pixelValues.length;
    }
    const key = `qwen25vl:${padded}:${grids.map((g) => g.join("x")).join(",")}`;
    const session = await this.session(key, padded, grids, positionIds);
    const feeds: Record<string, BigInt64Array | Float32Array> = { input_ids: ids };
    if (grids.length > 0) feeds.pixel_values = pixels;
    const hidden = (await session.run(feeds)).hidden as Float32Array;
    const d = config.hiddenSize;
    const kept = length - dropFirst;
    const rowsOut = Math.ceil(kept / bucket) * bucket;
    const out = new Float32Array(rowsOut * d);
    out.set(hidden.subarray(dropFirst * d, length * d));
    const mask = rowsOut > kept ? new Float32Array(rowsOut).fill(1, 0, kept) : undefined;
    return { hidden: out, length: rowsOut, mask };
  }

  private session(
    key: string,
    length: number,
    grids: readonly (readonly [number, number, number])[],
    positionIds: Int32Array,
  ): Promise<Session> {
    const { config, weights } = this.encoder;
    return this.sessions.get(key, () => {
      const g = new Graph("qwen25vl_encoder");
      const patchRows = grids.reduce((n, [t, h, w]) => n + t * h * w, 0);
      const v = config.vision;
      // One row per patch: channels × temporal patch × patch² values (1176 for Qwen2.5-VL).
      const rowWidth = v.inChannels * v.temporalPatchSize * v.patchSize ** 2;
      const { lastHiddenState } = buildQwen25VLEncoder(
        g,
        config,
        weights,
        {
          inputIds: g.input("input_ids", "int64", [1, length]),
          ...(patchRows > 0
            ? { pixelValues: g.input("pixel_values", "float32", [patchRows, rowWidth]) }
            : {}),
          imageGrids: grids,
          positionIds,
        },
        { dtype: this.options.dtype },
      );
      // The condition leaves as float32 whatever the compute dtype: the caller reads a Float32Array, and
      // onnxruntime-node cannot hand out bfloat16 at all.
      return { graph: g, outputs: { hidden: ops.cast(lastHiddenState, "float32") } };
    });
  }
}
