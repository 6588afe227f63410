import { ConfigError } from "./errors.js";

/**
 * The subset of diffusers' FlowMatchEulerDiscreteScheduler configuration that Edit-R1's models use.
 * Field meanings follow diffusers; `flowScheduleConfigFromDiffusers` reads a `scheduler_config.json`.
 */
export interface FlowScheduleConfig {
  numTrainTimesteps: number;
  /** Static shift, used only when `useDynamicShifting` is false. */
  shift: number;
  useDynamicShifting: boolean;
  baseShift: number;
  maxShift: number;
  baseImageSeqLen: number;
  maxImageSeqLen: number;
  timeShiftType: "exponential" | "linear";
  /** Stretch the schedule so its last (non-zero) sigma equals this value; null for none. */
  shiftTerminal: number | null;
}

/** diffusers' defaults for FlowMatchEulerDiscreteScheduler. */
export const DEFAULT_FLOW_SCHEDULE_CONFIG: FlowScheduleConfig = {
  numTrainTimesteps: 1000,
  shift: 1,
  useDynamicShifting: false,
  baseShift: 0.5,
  maxShift: 1.15,
  baseImageSeqLen: 256,
  maxImageSeqLen: 4096,
  timeShiftType: "exponential",
  shiftTerminal: null,
};

const UNSUPPORTED_FLAGS = ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"];

/** Reads a diffusers scheduler config (snake_case JSON); missing keys take diffusers' defaults. */
export function flowScheduleConfigFromDiffusers(json: Record<string, unknown>): FlowScheduleConfig {
  for (const flag of UNSUPPORTED_FLAGS) {
    if (json[flag] === true)
      throw new ConfigError(
        `scheduler config sets ${flag}: true, which the flow schedule does not implement; Edit-R1's models leave it false`,
      );
  }
  const d = DEFAULT_FLOW_SCHEDULE_CONFIG;
  const num = (key: string, fallback: number): number => {
    const v = json[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v))
      throw new ConfigError(`scheduler config ${key} must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  };
  const type = json.time_shift_type ?? d.timeShiftType;
  if (type !== "exponential" && type !== "linear")
    throw new ConfigError(
      `scheduler config time_shift_type must be "exponential" or "linear", got ${JSON.stringify(type)}`,
    );
  const terminal = json.shift_terminal;
  return validateFlowScheduleConfig({
    numTrainTimesteps: num("num_train_timesteps", d.numTrainTimesteps),
    shift: num("shift", d.shift),
    useDynamicShifting: json.use_dynamic_shifting === true,
    baseShift: num("base_shift", d.baseShift),
    maxShift: num("max_shift", d.maxShift),
    baseImageSeqLen: num("base_image_seq_len", d.baseImageSeqLen),
    maxImageSeqLen: num("max_image_seq_len", d.maxImageSeqLen),
    timeShiftType: type,
    // diffusers treats 0 like "unset" (it tests truthiness).
    shiftTerminal:
      terminal === undefined || terminal === null || terminal === 0 ? null : num("shift_terminal", 0),
  });
}

function validateFlowScheduleConfig(c: FlowScheduleConfig): FlowScheduleConfig {
  if (c.maxImageSeqLen === c.baseImageSeqLen)
    throw new ConfigError("scheduler config max_image_seq_len must differ from base_image_seq_len");
  if (c.shiftTerminal !== null && !(c.shiftTerminal > 0 && c.shiftTerminal < 1))
    throw new ConfigError(`scheduler config shift_terminal must lie in (0, 1), got ${c.shiftTerminal}`);
  if (!(c.shift > 0)) throw new ConfigError(`scheduler config shift must be positive, got ${c.shift}`);
  return c;
}

/** mu for dynamic shifting: linear in the image sequence length between (base len, base shift) and (max len, max shift). */
export function dynamicShiftMu(imageSeqLen: number, config: FlowScheduleConfig): number {
  const m = (config.maxShift - config.baseShift) / (config.maxImageSeqLen - config.baseImageSeqLen);
  const b = config.baseShift - m * config.baseImageSeqLen;
  return imageSeqLen * m + b;
}

/** The shift applied to one sigma in (0, 1]: exponential e^μ/(e^μ + 1/σ − 1) or linear μ/(μ + 1/σ − 1). */
export function timeShift(mu: number, sigma: number, type: "exponential" | "linear"): number {
  const a = type === "exponential" ? Math.exp(mu) : mu;
  return a / (a + (1 / sigma - 1));
}

/** Edit-R1's base sigmas before shifting: linspace(1, 1/n, n). */
export function editR1BaseSigmas(numSteps: number): number[] {
  if (!Number.isInteger(numSteps) || numSteps < 1)
    throw new ConfigError(`numSteps must be a positive integer, got ${numSteps}`);
  if (numSteps === 1) return [1];
  const end = 1 / numSteps;
  const step = (end - 1) / (numSteps - 1);
  // numpy's linspace pins the last value to `stop` exactly.
  return Array.from({ length: numSteps }, (_, i) => (i === numSteps - 1 ? end : 1 + step * i));
}

export interface FlowSchedule {
  /** numSteps sigmas in float32 precision, then the terminal 0. */
  sigmas: number[];
  /** sigma · numTrainTimesteps for each non-terminal sigma. */
  timesteps: number[];
  /** The dynamic-shift mu used, when dynamic shifting is on. */
  mu?: number;
}

export interface FlowScheduleOptions {
  numSteps: number;
  /** Image tokens of the noisy latent; gives mu when dynamic shifting is on and `mu` is not given. */
  imageSeqLen?: number;
  mu?: number;
  /** Base sigmas before shifting; Edit-R1's linspace(1, 1/n, n) by default. */
  baseSigmas?: readonly number[];
}

/**
 * The sigma schedule diffusers' `set_timesteps(sigmas=…, mu=…)` produces: shift (dynamic or static),
 * optional terminal stretch, rounded to float32 as diffusers stores it, with the terminal 0 appended.
 */
export function flowMatchSchedule(config: FlowScheduleConfig, options: FlowScheduleOptions): FlowSchedule {
  const base = options.baseSigmas ?? editR1BaseSigmas(options.numSteps);
  if (base.length !== options.numSteps)
    throw new ConfigError(`baseSigmas has ${base.length} values but numSteps is ${options.numSteps}`);
  // diffusers computes in float32 (numpy with Python scalars); rounding each operation the same way
  // keeps us within an ulp of its schedule rather than a few.
  const f = Math.fround;
  let mu: number | undefined;
  let sigmas = base.map((s) => f(s));
  if (config.useDynamicShifting) {
    mu =
      options.mu ??
      (options.imageSeqLen === undefined ? undefined : dynamicShiftMu(options.imageSeqLen, config));
    if (mu === undefined)
      throw new ConfigError("this schedule uses dynamic shifting: pass imageSeqLen (image tokens) or mu");
    const a = f(config.timeShiftType === "exponential" ? Math.exp(mu) : mu);
    sigmas = sigmas.map((s) => f(a / f(a + f(f(1 / s) - 1))));
  } else {
    const k = config.shift;
    sigmas = sigmas.map((s) => f(f(k * s) / f(1 + f((k - 1) * s))));
  }
  if (config.shiftTerminal !== null) {
    const oneMinus = sigmas.map((s) => f(1 - s));
    const scale = f(oneMinus[oneMinus.length - 1]! / (1 - config.shiftTerminal));
    sigmas = oneMinus.map((z) => f(1 - f(z / scale)));
  }
  const timesteps = sigmas.map((s) => f(s * config.numTrainTimesteps));
  const out: FlowSchedule = { sigmas: [...sigmas, 0], timesteps };
  if (mu !== undefined) out.mu = mu;
  return out;
}
