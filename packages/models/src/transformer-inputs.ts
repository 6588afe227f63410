import { GraphError, type Tensor } from "@edit-r1/engine";

const fmt = (s: readonly number[]) => `[${s.join(",")}]`;

/** The sizes a diffusion transformer reads off `hidden_states` [B, N, ·] and `encoder_hidden_states` [B, L, ·]. */
export interface TokenSizes {
  batch: number;
  imageTokens: number;
  textTokens: number;
}

/**
 * The shape check of a diffusion transformer builder's symbolic inputs: `expect(what, tensor, shape)` fails with
 * a GraphError naming the builder, the input, the shape found and the one wanted, and where the sizes came from.
 */
export function inputShapeChecker(
  builder: string,
  sizes: TokenSizes,
): (what: string, t: Tensor | undefined, shape: readonly number[]) => void {
  const { batch, imageTokens, textTokens } = sizes;
  return (what, t, shape) => {
    if (!t) throw new GraphError(`${builder}: input ${what} is missing (expected shape ${fmt(shape)})`);
    if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new GraphError(
        `${builder}: input ${what} has shape ${fmt(t.shape)}, expected ${fmt(shape)} ` +
          `(batch ${batch}, ${imageTokens} image tokens, ${textTokens} text tokens, from hidden_states and encoder_hidden_states)`,
      );
    }
  };
}
