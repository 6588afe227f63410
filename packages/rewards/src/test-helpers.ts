import type { RewardInput, RgbImage } from "@edit-r1/core";

/** A deterministic patterned image, different for every seed. */
export function patternImage(width: number, height: number, seed = 0): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 7 + seed * 31) & 255;
      data[i + 1] = (y * 5 + seed * 17) & 255;
      data[i + 2] = ((x ^ y) + seed * 13) & 255;
    }
  }
  return { width, height, data };
}

export function solidImage(width: number, height: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return { width, height, data };
}

export function rewardInput(key: string, seed: number, extra: Partial<RewardInput> = {}): RewardInput {
  return {
    key,
    instruction: `make item ${key} red`,
    source: patternImage(32, 24, seed),
    edited: patternImage(32, 24, seed + 1000),
    ...extra,
  };
}

/** Σ k·p_k / 5 over logprobs of "0".."5", softmaxed among themselves: the Edit-R1 formula, written out. */
export function editR1Score(logprobs: Record<string, number>): number {
  let z = 0;
  let s = 0;
  for (let k = 0; k <= 5; k++) {
    const lp = logprobs[String(k)];
    if (lp === undefined) continue;
    z += Math.exp(lp);
    s += k * Math.exp(lp);
  }
  return s / z / 5;
}
