import { DEFAULT_FLOW_SCHEDULE_CONFIG, flowMatchSchedule } from "@edit-r1/core";

/**
 * Static time shift of the tiny model's schedule. Edit-R1 uses linspace(1, 1/n, n) shifted; a shift above 1
 * spends more steps at high noise, where a pixel-space editor decides what goes where.
 */
export const TINY_DEFAULT_SHIFT = 2;

/** Edit-R1's linspace(1, 1/n, n) sigmas with a static shift, then the terminal 0. */
export function tinySigmas(steps: number, shift: number = TINY_DEFAULT_SHIFT): number[] {
  return flowMatchSchedule({ ...DEFAULT_FLOW_SCHEDULE_CONFIG, shift }, { numSteps: steps }).sigmas;
}
