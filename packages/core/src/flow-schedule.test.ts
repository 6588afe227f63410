import { describe, expect, it } from "vitest";
import {
  DEFAULT_FLOW_SCHEDULE_CONFIG,
  dynamicShiftMu,
  editR1BaseSigmas,
  flowMatchSchedule,
  flowScheduleConfigFromDiffusers,
  timeShift,
} from "./flow-schedule.js";

describe("flow schedules", () => {
  it("builds linspace(1, 1/n, n)", () => {
    expect(editR1BaseSigmas(4)).toEqual([1, 0.75, 0.5, 0.25]);
    expect(editR1BaseSigmas(1)).toEqual([1]);
  });

  it("applies a static shift σ' = kσ/(1 + (k − 1)σ) and appends the terminal 0", () => {
    const s = flowMatchSchedule({ ...DEFAULT_FLOW_SCHEDULE_CONFIG, shift: 3 }, { numSteps: 2 });
    expect(s.sigmas).toEqual([1, Math.fround(1.5 / 2), 0]);
    expect(s.timesteps).toEqual([1000, Math.fround(750)]);
    expect(s.mu).toBeUndefined();
  });

  it("shifts linearly when asked, with mu from the sequence length", () => {
    const config = {
      ...DEFAULT_FLOW_SCHEDULE_CONFIG,
      useDynamicShifting: true,
      timeShiftType: "linear" as const,
    };
    expect(dynamicShiftMu(256, config)).toBeCloseTo(0.5, 14);
    expect(dynamicShiftMu(4096, config)).toBeCloseTo(1.15, 14);
    const s = flowMatchSchedule(config, { numSteps: 2, mu: 2 });
    expect(s.sigmas[1]).toBeCloseTo(2 / 3, 6);
    expect(timeShift(2, 0.5, "exponential")).toBeCloseTo(Math.exp(2) / (Math.exp(2) + 1), 14);
  });

  it("stretches the schedule so the last sigma equals shift_terminal", () => {
    const s = flowMatchSchedule({ ...DEFAULT_FLOW_SCHEDULE_CONFIG, shiftTerminal: 0.1 }, { numSteps: 4 });
    expect(s.sigmas[0]).toBe(1);
    expect(s.sigmas[3]).toBeCloseTo(0.1, 6);
  });

  it("explains what is missing or unsupported", () => {
    const dyn = { ...DEFAULT_FLOW_SCHEDULE_CONFIG, useDynamicShifting: true };
    expect(() => flowMatchSchedule(dyn, { numSteps: 4 })).toThrow(/pass imageSeqLen/);
    expect(() => flowScheduleConfigFromDiffusers({ use_karras_sigmas: true })).toThrow(/use_karras_sigmas/);
    expect(() => flowScheduleConfigFromDiffusers({ time_shift_type: "cosine" })).toThrow(/time_shift_type/);
    expect(flowScheduleConfigFromDiffusers({ shift_terminal: 0 }).shiftTerminal).toBeNull();
  });
});
