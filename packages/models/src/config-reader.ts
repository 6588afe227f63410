import { ModelConfigError } from "./model-config-error.js";

/**
 * Reads a diffusers/transformers config.json: missing keys fall back to the library's defaults, and a bad
 * value fails naming the file and the key. Every config parser in this package reads through it.
 */
export function configReader(
  json: Record<string, unknown>,
  defaults: Record<string, unknown>,
  source: string,
): { get: (key: string) => unknown; int: (key: string) => number } {
  const get = (k: string) => (k in json ? json[k] : defaults[k]);
  const int = (k: string): number => {
    const v = get(k);
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ModelConfigError(`${source}: "${k}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  return { get, int };
}

/** `axes_dims_rope`: three positive even integers that split the attention head dimension. */
export function ropeAxes(axes: unknown, headDim: number, source: string): [number, number, number] {
  if (
    !Array.isArray(axes) ||
    axes.length !== 3 ||
    !axes.every((a) => Number.isInteger(a) && a > 0 && a % 2 === 0)
  ) {
    throw new ModelConfigError(
      `${source}: "axes_dims_rope" must be three positive even integers, got ${JSON.stringify(axes)}`,
    );
  }
  const sum = axes.reduce((a: number, b: number) => a + b, 0);
  if (sum !== headDim) {
    throw new ModelConfigError(
      `${source}: "axes_dims_rope" must sum to attention_head_dim (${headDim}), got ${sum}`,
    );
  }
  return axes as [number, number, number];
}
