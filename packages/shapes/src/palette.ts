/**
 * The closed colour palette. The colours are far apart (every pair differs by at least 80 in some
 * channel) so the verifier's colour tolerance can never confuse two of them.
 */
export const COLOR_NAMES = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"] as const;
export type ColorName = (typeof COLOR_NAMES)[number];

export const PALETTE: Readonly<Record<ColorName, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [40, 80, 220],
  yellow: [240, 220, 40],
  purple: [150, 60, 200],
  orange: [250, 140, 20],
  white: [250, 250, 250],
  black: [20, 20, 20],
};

export function isColorName(value: unknown): value is ColorName {
  return typeof value === "string" && (COLOR_NAMES as readonly string[]).includes(value);
}
