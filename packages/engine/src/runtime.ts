import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { type DType, numel } from "./dtype.js";
import { EditR1Error } from "./errors.js";
import { Graph, type Tensor } from "./graph.js";
import { summarizeUncovered, uncoveredNodes } from "./kernels.js";
import { type LoweredModel, lower, type ValueSpec } from "./lower.js";
import { mul } from "./ops.js";
import {
  CUDA_INSTALL_COMMAND,
  cudaRequirements,
  onnxruntimeInstall,
  WEBGPU_INSTALL_HINT,
} from "./providers.js";
import { WORKER_SOURCE } from "./runtime-worker-source.js";

/** Typed arrays that cross the runtime boundary, one per dtype onnxruntime-node supports for I/O. */
export type TensorData = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

/** Failure inside onnxruntime (session creation or run), or of the worker hosting it. */
export class RuntimeError extends EditR1Error {
  override name = "RuntimeError";
}

/** Wrong feeds passed to `Session.run`: missing, unknown, wrong type or wrong size. */
export class FeedError extends RuntimeError {
  override name = "FeedError";
}

/** The CUDA execution provider could not be loaded. */
export class CudaUnavailableError extends RuntimeError {
  override name = "CudaUnavailableError";
  constructor(detail: string) {
    const version = installedOnnxruntimeVersion();
    const need = version ? cudaRequirements(version) : undefined;
    super(
      "device 'cuda' needs onnxruntime-node's CUDA execution provider, which is not installed or cannot load " +
        `(${detail}). Install it with \`${CUDA_INSTALL_COMMAND}\`` +
        (need
          ? ` (onnxruntime-node ${version} downloads a build for CUDA ${need.cuda}.x and cuDNN ${need.cudnn}.x, whose lib folders must be on LD_LIBRARY_PATH)`
          : " (then the CUDA and cuDNN lib folders must be on LD_LIBRARY_PATH)") +
        "; `edit-r1 doctor` says what is missing. Or use device 'cpu'.",
    );
  }
}

/** The WebGPU execution provider (bundled with onnxruntime-node, Dawn over Vulkan) found no GPU adapter. */
export class WebGpuUnavailableError extends RuntimeError {
  override name = "WebGpuUnavailableError";
  constructor(detail: string) {
    super(
      `device 'webgpu' needs a Vulkan loader and driver, and onnxruntime-node's WebGPU provider found no adapter (${detail}). ` +
        `${WEBGPU_INSTALL_HINT}; \`edit-r1 doctor\` checks it. Or use device 'cpu'.`,
    );
  }
}

function installedOnnxruntimeVersion(): string | undefined {
  try {
    return onnxruntimeInstall().version;
  } catch {
    return undefined;
  }
}

/**
 * Where sessions run: `cpu` (onnxruntime's CPU provider), `cuda` (its CUDA provider, installed separately) or
 * `webgpu` (its bundled WebGPU provider: Dawn over Vulkan, Metal or D3D12; on a machine without a GPU, Mesa's
 * software Vulkan driver).
 */
export type Device = "cpu" | "cuda" | "webgpu";

/** The devices `Device` names, in that order. */
export const DEVICES: readonly Device[] = ["cpu", "cuda", "webgpu"];

export interface SessionOptions {
  device?: Device;
  /** CUDA device ordinal (default 0). */
  deviceId?: number;
  /**
   * On `cuda` and `webgpu`: whether nodes the provider has no kernel for may run on the CPU provider instead
   * (onnxruntime's default, true; each such node costs copies between device and host). With false, opening a
   * graph with such nodes fails, naming them from the kernel table (`KERNEL_TABLE`).
   */
  cpuFallback?: boolean;
  /** Intra-op threads; onnxruntime's default (all cores) when omitted. */
  threads?: number;
  /**
   * Whether onnxruntime may prepack (copy into its own layout) constant weights. Prepacking speeds up
   * MatMul but copies every weight into anonymous memory, so by default it is off once external weights
   * reach `bigWeightBytes`.
   */
  prepacking?: boolean;
  /**
   * Whether onnxruntime folds constant subgraphs. Folding `Cast(bf16 weight)` materialises a float32 copy
   * of the weight; by default it is off once non-float32 external weights reach `bigWeightBytes`
   * (the cast then runs on every call instead).
   */
  constantFolding?: boolean;
  /**
   * Whether onnxruntime's worker threads spin-wait for the next task after a run (its default). Off by
   * default here: the engine runs several sessions (each with its own thread pool) and JavaScript work on
   * a few cores, and a pool that spins after its run burns the cores the next session or the event loop
   * needs. Measured on the 2-core machine: the next session's run took twice as long.
   */
  spinning?: boolean;
  /**
   * Whether onnxruntime plans memory patterns. With it on, onnxruntime reserves one block the size of all
   * initializers at session start, even for external weights it then maps from their files: untouched, but a
   * single allocation that Linux's default overcommit refuses once it exceeds RAM (measured: the 40.9 GB
   * Qwen-Image transformer fails with std::bad_alloc on a 24 GiB machine, opens in seconds without it). By
   * default it is off once external weights reach `bigWeightBytes`.
   */
  memoryPattern?: boolean;
  /**
   * Path prefix of an onnxruntime profile (per-node timings, Chrome trace JSON) for this session:
   * onnxruntime writes `<prefix>_<date>.json` when `Session.endProfiling()` is called. A profiled session
   * is a different session from an unprofiled one of the same graph.
   */
  profile?: string;
  /** Threshold for the three defaults above (default 256 MiB). */
  bigWeightBytes?: number;
  /**
   * Outputs that runs store in device values (`RunOptions.to`) rather than return: on `webgpu` they stay in
   * GPU memory (onnxruntime's "gpu-buffer" output location), so the next run that reads them from there moves
   * nothing between host and device. Elsewhere they stay in the worker's memory, which already saves the
   * round trip to the caller.
   */
  deviceOutputs?: readonly string[];
  /** The device values this session's runs read and write; the session is opened on the worker that holds them. */
  values?: DeviceValues;
  optimizationLevel?: "disabled" | "basic" | "extended" | "all";
}

export interface CompileOptions extends SessionOptions {
  /** The tensors to compute, by output name. */
  outputs: Readonly<Record<string, Tensor>>;
  /** The worker pool to run on (default: the shared pool from `defaultRuntime()`). */
  runtime?: Runtime;
}

export interface RunOptions {
  /**
   * Move the feeds' buffers to the worker instead of copying them. The caller's arrays are detached
   * (length 0) afterwards; the moved buffers become the session's staging buffers for later runs. Views
   * into a larger buffer and SharedArrayBuffer-backed arrays are always copied.
   */
  transfer?: boolean;
  /**
   * Caller-owned arrays to receive outputs, by output name: the results are copied into them and these
   * same arrays are returned. Opting in means a later run given the same array overwrites what an earlier
   * run returned in it. Without `into`, every run returns fresh arrays that no later run touches.
   */
  into?: Readonly<Record<string, TensorData>>;
  /** Device values to read and write (the session must have been opened with the same `values`). */
  values?: DeviceValues;
  /** Inputs fed from device values: input name → value name. Feeds passed as arrays take precedence. */
  from?: Readonly<Record<string, string>>;
  /**
   * Outputs stored in device values instead of returned: output name → value name (created or replaced; the
   * value's earlier tensor is freed). A failed run stores nothing, so the values keep what they held.
   */
  to?: Readonly<Record<string, string>>;
}

const ORT_TYPE: Readonly<Partial<Record<DType, string>>> = {
  float32: "float32",
  float16: "float16",
  float64: "float64",
  int64: "int64",
  int32: "int32",
  uint8: "uint8",
  bool: "bool",
};

const ARRAY_TYPE: Readonly<Partial<Record<DType, new (n: number) => TensorData>>> = {
  float32: Float32Array,
  float16: Uint16Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

const DEFAULT_BIG_WEIGHT_BYTES = 256 * 1024 * 1024;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** Receives the input buffers the worker hands back, after a successful or a failed run. */
  returned?: ((inputs: Record<string, TensorData>) => void) | undefined;
  /** Receives where a successful run stored its device values (value name → "cpu" or "gpu-buffer"). */
  stored?: ((where: Record<string, string>) => void) | undefined;
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { name: string; message: string };
  inputs?: Record<string, TensorData>;
  stored?: Record<string, string>;
}

/** One worker thread hosting sessions. It keeps the process alive only while requests are in flight. */
class WorkerHost {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  sessions = 0;
  private dead: Error | undefined;

  constructor(ortPath: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortPath } });
    this.worker.unref();
    this.worker.on("message", (m: Reply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if (m.inputs) p.returned?.(m.inputs);
      if (m.ok && m.stored) p.stored?.(m.stored);
      if (m.ok) p.resolve(m.result);
      else {
        const { name, message } = m.error!;
        p.reject(
          name === "CudaUnavailableError"
            ? new CudaUnavailableError(message)
            : name === "WebGpuUnavailableError"
              ? new WebGpuUnavailableError(message)
              : new RuntimeError(message),
        );
      }
    });
    const die = (e: Error) => {
      this.dead = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on("error", (e) => die(new RuntimeError(`onnxruntime worker failed: ${e.message}`)));
    this.worker.on("exit", (code) => die(new RuntimeError(`onnxruntime worker exited (code ${code})`)));
  }

  get busy(): number {
    return this.pending.size;
  }

  request<T>(
    msg: Record<string, unknown>,
    transfer: ArrayBuffer[] = [],
    returned?: (inputs: Record<string, TensorData>) => void,
    stored?: (where: Record<string, string>) => void,
  ): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.worker.postMessage({ ...msg, id }, transfer);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, returned, stored });
      if (this.pending.size === 1) this.worker.ref();
    });
  }

  async terminate(): Promise<void> {
    this.dead ??= new RuntimeError("the runtime was closed");
    await this.worker.terminate();
  }
}

interface SharedSession {
  key: string;
  host: WorkerHost;
  sid: number;
  refs: number;
  model: LoweredModel;
  device: Device;
  /**
   * One idle staging buffer per input name. A run copies each feed into its input's buffer (or allocates
   * one when it is lent out to a run still in flight), moves it to the worker, and the worker hands it back
   * with the reply. Copying into memory already touched costs a memcpy; copying into a fresh allocation
   * (what a plain `slice()` per run does) also pays a page fault per 4 KiB, which on the 2-core machine was
   * ~2 ms per 4 MiB feed, a quarter of a 1024³ MatMul.
   */
  staging: Map<string, ArrayBuffer>;
  /** Staging buffers allocated so far (reuse keeps this at one per input). */
  stagingAllocations: number;
  released: boolean;
}

/**
 * A pool of worker threads that own onnxruntime sessions, plus a cache of sessions keyed by the hash of
 * the lowered model and its session options: compiling the same graph twice reuses one session.
 */
export class Runtime {
  readonly workers: number;
  private readonly hosts: WorkerHost[] = [];
  private readonly cache = new Map<string, Promise<SharedSession>>();
  private nextSid = 0;
  private nextHandle = 0;
  private nextValues = 0;
  private closed = false;
  private readonly ortPath: string;

  constructor(options: { workers?: number } = {}) {
    this.workers = Math.max(1, Math.floor(options.workers ?? 1));
    this.ortPath = createRequire(import.meta.url).resolve("onnxruntime-node");
  }

  /** Number of distinct live sessions in the cache. */
  get sessionCount(): number {
    return this.cache.size;
  }

  private pickHost(): WorkerHost {
    if (this.hosts.length < this.workers) {
      const h = new WorkerHost(this.ortPath);
      this.hosts.push(h);
      return h;
    }
    return this.hosts.reduce((best, h) => (h.sessions < best.sessions ? h : best));
  }

  /**
   * A new, empty set of device values on one of this runtime's workers: tensors that stay there (on the GPU
   * for WebGPU outputs) between runs and sessions. Sessions that use them are opened with `{ values }`.
   */
  values(): DeviceValues {
    if (this.closed) throw new RuntimeError("values: this runtime was closed; create a new Runtime");
    return new DeviceValues(this, this.pickHost(), this.nextValues++);
  }

  /** Lowers `graph` and opens (or reuses) a session computing `options.outputs`. */
  async compile(graph: Graph, options: CompileOptions): Promise<Session> {
    return this.open(lower(graph, { outputs: options.outputs, provider: options.device ?? "cpu" }), options);
  }

  /** Opens (or reuses) a session over an already lowered model. */
  async open(model: LoweredModel, options: SessionOptions = {}): Promise<Session> {
    if (this.closed) throw new RuntimeError("compile: this runtime was closed; create a new Runtime");
    for (const v of [...model.inputs, ...model.outputs]) {
      if (!ORT_TYPE[v.dtype]) {
        throw new RuntimeError(
          `"${v.name}" is ${v.dtype}, which onnxruntime-node cannot pass in or out; cast it to float32 or float16 inside the graph`,
        );
      }
    }
    if (options.values && options.values.runtime !== this)
      throw new RuntimeError("compile: `values` belong to another Runtime; open the session on that one");
    for (const name of options.deviceOutputs ?? [])
      if (!model.outputs.some((o) => o.name === name))
        throw new RuntimeError(
          `compile: deviceOutputs names "${name}", which is not an output (outputs: ${model.outputs.map((o) => o.name).join(", ")})`,
        );
    const ortOptions = sessionOptions(model, options);
    const key = createHash("sha256")
      .update(model.bytes)
      .update(JSON.stringify(ortOptions))
      // A session over device values must live on their worker: one per set of values.
      .update(options.values ? `values:${options.values.id}` : "")
      .digest("hex");
    let entry = this.cache.get(key);
    if (!entry) {
      entry = this.create(key, model, ortOptions, options.device ?? "cpu", options.values?.host);
      this.cache.set(key, entry);
      entry.catch(() => this.cache.delete(key));
    }
    const shared = await entry;
    shared.refs++;
    return new Session(this, shared, this.nextHandle++);
  }

  private async create(
    key: string,
    model: LoweredModel,
    ortOptions: Record<string, unknown>,
    device: Device,
    pinned?: WorkerHost,
  ): Promise<SharedSession> {
    const host = pinned ?? this.pickHost();
    host.sessions++;
    const sid = this.nextSid++;
    const bytes = model.bytes.slice();
    try {
      await host.request({ type: "create", sid, bytes, options: ortOptions, device }, [bytes.buffer]);
    } catch (e) {
      host.sessions--;
      throw withUncoveredNodes(e, model, device);
    }
    return {
      key,
      host,
      sid,
      refs: 0,
      model,
      device,
      staging: new Map(),
      stagingAllocations: 0,
      released: false,
    };
  }

  /** @internal */
  async release(shared: SharedSession): Promise<void> {
    if (--shared.refs > 0) return;
    shared.released = true;
    shared.staging.clear();
    this.cache.delete(shared.key);
    shared.host.sessions--;
    if (!this.closed) await shared.host.request({ type: "release", sid: shared.sid });
  }

  /** Terminates the workers; pending and later calls reject. */
  async close(): Promise<void> {
    this.closed = true;
    this.cache.clear();
    await Promise.all(this.hosts.map((h) => h.terminate()));
    this.hosts.length = 0;
  }
}

function sessionOptions(model: LoweredModel, o: SessionOptions): Record<string, unknown> {
  const big = o.bigWeightBytes ?? DEFAULT_BIG_WEIGHT_BYTES;
  const prepacking = o.prepacking ?? model.externalBytes < big;
  const folding = o.constantFolding ?? model.externalNonFloat32Bytes < big;
  const memoryPattern = o.memoryPattern ?? model.externalBytes < big;
  const session: Record<string, string> = {};
  if (model.externalFolder) session.model_external_initializers_file_folder_path = model.externalFolder;
  if (!prepacking) session.disable_prepacking = "1";
  if (!o.spinning) {
    session["intra_op.allow_spinning"] = "0";
    session["inter_op.allow_spinning"] = "0";
  }
  if (o.cpuFallback === false && o.device !== undefined && o.device !== "cpu")
    session.disable_cpu_ep_fallback = "1";
  const extra: Record<string, Record<string, string>> = { session };
  const disabled = [
    ...(folding ? [] : ["ConstantFolding"]),
    // Recomputed nodes are exact twins of forward nodes; merging them would undo the recomputation.
    ...(model.recomputes ? ["CommonSubexpressionElimination"] : []),
  ];
  if (disabled.length > 0) extra.optimization = { disable_specified_optimizers: disabled.join(",") };
  const options: Record<string, unknown> = {
    executionProviders:
      o.device === "cuda"
        ? [{ name: "cuda", deviceId: o.deviceId ?? 0 }]
        : o.device === "webgpu"
          ? [{ name: "webgpu" }]
          : ["cpu"],
    graphOptimizationLevel: o.optimizationLevel ?? "all",
    extra,
  };
  if (o.threads !== undefined) options.intraOpNumThreads = o.threads;
  if (o.profile !== undefined) {
    options.enableProfiling = true;
    options.profileFilePrefix = o.profile;
  }
  if (!memoryPattern) options.enableMemPattern = false;
  if (o.device === "webgpu" && o.deviceOutputs?.length)
    options.preferredOutputLocation = Object.fromEntries(o.deviceOutputs.map((n) => [n, "gpu-buffer"]));
  return options;
}

/**
 * A session that failed because nodes would have run on the CPU with CPU fallback disabled: the error names
 * them, as the kernel table sees them (onnxruntime's own message does not).
 */
function withUncoveredNodes(e: unknown, model: LoweredModel, device: Device): unknown {
  if (
    device === "cpu" ||
    !(e instanceof RuntimeError) ||
    !/fallback to CPU EP has been explicitly disabled/.test(e.message)
  )
    return e;
  const uncovered = summarizeUncovered(uncoveredNodes(model.nodes, device));
  return new RuntimeError(
    `${e.message} ${uncovered.length ? `Nodes without a ${device} kernel (kernel table): ${uncovered.join("; ")}.` : `The kernel table lists no ${device} gap in this graph; onnxruntime placed some node on the CPU anyway.`} ` +
      "Open it with cpuFallback: true to let those nodes run on the CPU.",
  );
}

/** A compiled graph living in a worker. `run` is safe to call concurrently (calls queue in the worker). */
export class Session {
  private disposed = false;
  private readonly kept = new Set<string>();

  /** @internal */
  constructor(
    private readonly runtime: Runtime,
    private readonly shared: SharedSession,
    private readonly handle: number,
  ) {}

  /** Cache key: sha256 of the model bytes and session options. */
  get key(): string {
    return this.shared.key;
  }

  get inputs(): readonly ValueSpec[] {
    return this.shared.model.inputs;
  }

  get outputs(): readonly ValueSpec[] {
    return this.shared.model.outputs;
  }

  /** Names of the inputs this handle keeps in the worker (see `keep`). */
  get keptInputs(): readonly string[] {
    return [...this.kept];
  }

  /** @internal Staging buffers allocated by this session so far (tests check that runs reuse them). */
  get stagingAllocations(): number {
    return this.shared.stagingAllocations;
  }

  /**
   * Keeps feeds in the worker for this handle's later runs, which may then leave them out: a tensor that
   * does not change between runs (a condition over all sampler steps, frozen inputs) crosses to the worker
   * once instead of on every run. The data is copied (moved with `{ transfer: true }`), so the caller may
   * reuse its arrays; a run that passes the same name uses its own feed instead. On the CPU the kept tensor
   * is what onnxruntime reads; with CUDA, onnxruntime-node still copies it to the device on each run (its
   * binding keeps nothing on the GPU between runs). Feeds of inputs the graph does not use are ignored.
   */
  async keep(
    feeds: Readonly<Record<string, TensorData>>,
    options: { transfer?: boolean } = {},
  ): Promise<void> {
    this.live("keep");
    const { model, host, sid } = this.shared;
    const wire: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, data] of Object.entries(feeds)) {
      const spec = model.inputs.find((i) => i.name === name);
      if (!spec) {
        if (model.unusedInputs.includes(name)) continue;
        throw unknownFeed("keep", name, model.inputs);
      }
      checkFeed("keep", spec, data);
      const moved = options.transfer && movable(data, transfer) ? data : data.slice();
      transfer.push(moved.buffer as ArrayBuffer);
      wire[name] = { type: ORT_TYPE[spec.dtype]!, data: moved, dims: spec.shape };
    }
    const names = Object.keys(wire);
    if (names.length === 0) return;
    // Recorded before the worker answers: messages run in order there, so a run sent right after this
    // call (without awaiting it) already finds the kept tensors.
    for (const n of names) this.kept.add(n);
    try {
      await host.request({ type: "keep", sid, hid: this.handle, feeds: wire }, transfer);
    } catch (e) {
      for (const n of names) this.kept.delete(n);
      throw e;
    }
  }

  /** Drops kept feeds (all of them when `names` is omitted); later runs must pass them again. */
  async forget(names?: readonly string[]): Promise<void> {
    this.live("forget");
    const drop = names ?? [...this.kept];
    if (!drop.some((n) => this.kept.has(n))) return;
    for (const n of drop) this.kept.delete(n);
    const { host, sid } = this.shared;
    await host.request({ type: "forget", sid, hid: this.handle, names: drop });
  }

  async run(
    feeds: Readonly<Record<string, TensorData>>,
    options: RunOptions = {},
  ): Promise<Record<string, TensorData>> {
    this.live("run");
    const shared = this.shared;
    const { model, host, sid } = shared;
    const wire: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    const { values, from = {}, to = {} } = options;
    if ((Object.keys(from).length || Object.keys(to).length) && !values)
      throw new FeedError("run: `from` and `to` name device values; pass them as `values`");
    if (values && values.host !== shared.host)
      throw new FeedError(
        "run: these device values live on another worker; open the session with `{ values }`",
      );
    const fromValues: Record<string, string> = {};
    for (const [input, value] of Object.entries(from)) {
      const spec = model.inputs.find((i) => i.name === input);
      if (!spec) {
        if (model.unusedInputs.includes(input)) continue;
        throw unknownFeed("run", input, model.inputs);
      }
      values!.check(value, spec, `input "${input}"`);
      if (feeds[input] === undefined) fromValues[input] = value;
    }
    for (const [output, value] of Object.entries(to)) {
      if (!model.outputs.some((o) => o.name === output))
        throw new FeedError(
          `run: to["${output}"] is not an output; the session's outputs are ${model.outputs.map((o) => o.name).join(", ")}`,
        );
      if (typeof value !== "string" || value === "")
        throw new FeedError(`run: to["${output}"] must name a device value`);
    }
    for (const spec of model.inputs) {
      const data = feeds[spec.name];
      if (data === undefined) {
        if (this.kept.has(spec.name) || fromValues[spec.name] !== undefined) continue;
        const need = model.inputs.map((i) => i.name).join(", ");
        throw new FeedError(
          `run: missing feed "${spec.name}" (${spec.dtype} [${spec.shape}]); needs ${need}` +
            (this.kept.size ? ` (kept: ${[...this.kept].join(", ")})` : ""),
        );
      }
      checkFeed("run", spec, data);
      const staged = options.transfer && movable(data, transfer) ? data : stage(shared, spec, data);
      transfer.push(staged.buffer as ArrayBuffer);
      wire[spec.name] = { type: ORT_TYPE[spec.dtype]!, data: staged, dims: spec.shape };
    }
    for (const name of Object.keys(feeds)) {
      if (!wire[name] && !model.unusedInputs.includes(name)) throw unknownFeed("run", name, model.inputs);
    }
    const into = options.into ?? {};
    for (const [name, dest] of Object.entries(into)) {
      if (to[name] !== undefined)
        throw new FeedError(`run: output "${name}" is both in \`into\` and in \`to\``);
      const spec = model.outputs.find((o) => o.name === name);
      if (!spec) {
        throw new FeedError(
          `run: into["${name}"] is not an output; the session's outputs are ${model.outputs.map((o) => o.name).join(", ")}`,
        );
      }
      checkFeed("run", spec, dest, `into["${name}"]`);
    }
    const out = await host.request<Record<string, TensorData>>(
      { type: "run", sid, hid: this.handle, feeds: wire, from: fromValues, to },
      transfer,
      (inputs) => unstage(shared, inputs),
      (where) => {
        for (const [output, value] of Object.entries(to)) {
          const spec = model.outputs.find((o) => o.name === output)!;
          values!.record(value, spec, where[value] === "gpu-buffer" ? "device" : "host", shared.device);
        }
      },
    );
    for (const [name, dest] of Object.entries(into)) {
      (dest as Float32Array).set(out[name] as Float32Array);
      out[name] = dest;
    }
    return out;
  }

  /**
   * Ends the onnxruntime profile of a session opened with `profile` and returns the path of the JSON file
   * written (events with `cat: "Node"` carry each kernel's duration in µs and its `args.op_name`). Profiling
   * stops for every handle of the session.
   */
  async endProfiling(): Promise<string> {
    this.live("endProfiling");
    const { host, sid } = this.shared;
    return host.request<string>({ type: "endProfiling", sid });
  }

  /** Releases this handle; the underlying session closes when its last handle is disposed. Idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.kept.size > 0 && !this.shared.released) {
      this.kept.clear();
      // Best effort: the worker also drops every kept tensor of a session when the session closes.
      await this.shared.host
        .request({ type: "forget", sid: this.shared.sid, hid: this.handle, names: null })
        .catch(() => {});
    }
    await this.runtime.release(this.shared);
  }

  private live(what: string): void {
    if (this.disposed) throw new RuntimeError(`${what}: this session was disposed; compile the graph again`);
  }
}

/** What the parent knows of a device value: its type and shape, and whether it is on the device. */
export interface DeviceValueSpec {
  dtype: DType;
  shape: readonly number[];
  /** "device": in GPU memory (a WebGPU output); "host": in the worker's memory. */
  where: "device" | "host";
  /** The device of the session that wrote it last (cpu for values set from arrays). */
  device: Device;
}

/**
 * Named tensors that live in one worker between runs, shared by the sessions opened with them
 * (`Runtime.values()`, `compile(…, { values })`): a run reads inputs from them (`from`) and stores outputs in
 * them (`to`) without sending either through the caller. Outputs a WebGPU session declares as
 * `deviceOutputs` stay in GPU memory, so training state (parameters, optimizer moments) can stay on the
 * device from one step to the next; `read` brings a value back (through a small session with host outputs,
 * since onnxruntime-node cannot read GPU tensors directly).
 */
export class DeviceValues {
  private readonly specs = new Map<string, DeviceValueSpec>();
  /** One-node sessions that read values back and upload them, by device, dtype and shape. */
  private readonly sessions = new Map<string, Promise<Session>>();

  /** @internal */
  constructor(
    readonly runtime: Runtime,
    /** @internal */ readonly host: WorkerHost,
    /** Tells value sets apart (session cache keys use it). */
    readonly id: number,
  ) {}

  /** Names of the values held, in the order they were first stored. */
  get names(): string[] {
    return [...this.specs.keys()];
  }

  spec(name: string): DeviceValueSpec | undefined {
    return this.specs.get(name);
  }

  /** Stores a copy of `data` (on the host side of the worker; a WebGPU run uploads it when it reads it). */
  async set(name: string, dtype: DType, shape: readonly number[], data: TensorData): Promise<void> {
    const spec: ValueSpec = { name, dtype, shape: [...shape] };
    if (!ORT_TYPE[dtype])
      throw new FeedError(`DeviceValues.set: "${name}" is ${dtype}, which cannot be passed in`);
    checkFeed("DeviceValues.set", spec, data, `"${name}"`);
    const copy = data.slice();
    await this.host.request(
      { type: "setValue", name, tensor: { type: ORT_TYPE[dtype], data: copy, dims: spec.shape } },
      [copy.buffer as ArrayBuffer],
    );
    this.specs.set(name, { dtype, shape: spec.shape, where: "host", device: "cpu" });
  }

  /**
   * Stores a copy of `data` on `device`: on webgpu a float value is moved into GPU memory once (through a one-node
   * session with a GPU output), so the runs that read it do not upload it each time. Elsewhere, or for other
   * dtypes, it is `set` (the worker's memory).
   */
  async upload(
    name: string,
    dtype: DType,
    shape: readonly number[],
    data: TensorData,
    device: Device,
  ): Promise<void> {
    await this.set(name, dtype, shape, data);
    if (device !== "webgpu" || (dtype !== "float32" && dtype !== "float16")) return;
    const key = `up|${device}|${dtype}|${shape}`;
    let session = this.sessions.get(key);
    if (!session) {
      const g = new Graph("upload_device_value");
      const x = g.input("x", dtype, shape);
      session = this.runtime.compile(g, {
        outputs: { y: mul(x, 1) },
        device,
        values: this,
        deviceOutputs: ["y"],
      });
      session.catch(() => this.sessions.delete(key));
      this.sessions.set(key, session);
    }
    await (await session).run({}, { values: this, from: { x: name }, to: { y: name } });
  }

  /** A copy of the value, read back from wherever it lives. */
  async read(name: string): Promise<TensorData> {
    const spec = this.specs.get(name);
    if (!spec) throw this.missing(name, "read");
    const data = await this.host.request<TensorData | null>({ type: "readValue", name });
    if (data) return data;
    const reader = await this.reader(spec);
    const out = await reader.run({}, { values: this, from: { x: name } });
    return out.y!;
  }

  /** Frees the named values (all of them when `names` is omitted). */
  async delete(names?: readonly string[]): Promise<void> {
    const drop = names ?? this.names;
    await this.host.request({ type: "deleteValues", names: drop });
    for (const n of drop) this.specs.delete(n);
  }

  /** Frees every value and the sessions that read them back or upload them. */
  async dispose(): Promise<void> {
    await this.delete();
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map(async (r) => (await r.catch(() => undefined))?.dispose()));
  }

  /** @internal Fails unless the value exists with the input's type and shape. */
  check(name: string, spec: ValueSpec, what: string): void {
    const have = this.specs.get(name);
    if (!have) throw this.missing(name, `run: ${what}`);
    if (have.dtype !== spec.dtype || have.shape.join(",") !== spec.shape.join(","))
      throw new FeedError(
        `run: ${what} is ${spec.dtype} [${spec.shape}], but device value "${name}" is ${have.dtype} [${have.shape}]`,
      );
  }

  /** @internal */
  record(name: string, spec: ValueSpec, where: "device" | "host", device: Device): void {
    this.specs.set(name, { dtype: spec.dtype, shape: [...spec.shape], where, device });
  }

  private missing(name: string, what: string): FeedError {
    return new FeedError(
      `${what}: no device value "${name}"; held: ${this.names.join(", ") || "(none)"}. Store it with set() or a run's \`to\` first`,
    );
  }

  /** y = x·1 on the value's device, with y on the host: how a GPU value is read back. */
  private reader(spec: DeviceValueSpec): Promise<Session> {
    const key = `read|${spec.device}|${spec.dtype}|${spec.shape}`;
    let session = this.sessions.get(key);
    if (!session) {
      const g = new Graph("read_device_value");
      const x = g.input("x", spec.dtype, spec.shape);
      session = this.runtime.compile(g, { outputs: { y: mul(x, 1) }, device: spec.device, values: this });
      session.catch(() => this.sessions.delete(key));
      this.sessions.set(key, session);
    }
    return session;
  }
}

interface WireTensor {
  type: string;
  data: TensorData;
  dims: readonly number[];
}

function checkFeed(what: string, spec: ValueSpec, data: TensorData, label = `feed "${spec.name}"`): void {
  const Want = ARRAY_TYPE[spec.dtype]!;
  const kind = what === "run" && label.startsWith("into") ? "output" : "input";
  if (!(data instanceof Want)) {
    throw new FeedError(
      `${what}: ${label} is a ${data?.constructor?.name ?? typeof data} but the ${kind} is ${spec.dtype}; pass a ${Want.name}`,
    );
  }
  const n = numel(spec.shape);
  if (data.length !== n) {
    throw new FeedError(
      `${what}: ${label} has ${data.length} elements but ${spec.dtype} [${spec.shape}] needs ${n}`,
    );
  }
}

function unknownFeed(what: string, name: string, inputs: readonly ValueSpec[]): FeedError {
  return new FeedError(
    `${what}: unknown feed "${name}"; the session's inputs are ${inputs.map((i) => i.name).join(", ") || "(none)"}`,
  );
}

/**
 * Whether `data`'s buffer can be moved to the worker as it is: it must be a whole, unshared ArrayBuffer
 * not already listed (the same array fed to two inputs is moved once and copied for the second).
 * onnxruntime-node refuses SharedArrayBuffer-backed tensors ("Invalid argument"), so those are copied.
 */
function movable(data: TensorData, transfer: readonly ArrayBuffer[]): boolean {
  return (
    data.buffer instanceof ArrayBuffer &&
    data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength &&
    !transfer.includes(data.buffer)
  );
}

/** Copies a feed into its input's idle staging buffer, or a new one while that is lent out. */
function stage(shared: SharedSession, spec: ValueSpec, data: TensorData): TensorData {
  let buffer = shared.staging.get(spec.name);
  if (buffer && buffer.byteLength === data.byteLength) shared.staging.delete(spec.name);
  else {
    buffer = new ArrayBuffer(data.byteLength);
    shared.stagingAllocations++;
  }
  const view = new (ARRAY_TYPE[spec.dtype] as unknown as new (b: ArrayBuffer) => TensorData)(buffer);
  (view as Float32Array).set(data as Float32Array);
  return view;
}

/** Takes back the input buffers a run handed back (moved feeds included) as idle staging buffers. */
function unstage(shared: SharedSession, inputs: Record<string, TensorData>): void {
  if (shared.released) return;
  for (const [name, data] of Object.entries(inputs)) {
    const buffer = data.buffer;
    if (buffer instanceof ArrayBuffer && buffer.byteLength > 0 && !shared.staging.has(name)) {
      shared.staging.set(name, buffer);
    }
  }
}

let shared: Runtime | undefined;

/** The process-wide pool used when `compile` is not given a runtime (one worker). */
export function defaultRuntime(): Runtime {
  shared ??= new Runtime();
  return shared;
}

/** Closes the process-wide pool (a later `compile` starts a fresh one). */
export async function closeDefaultRuntime(): Promise<void> {
  const r = shared;
  shared = undefined;
  await r?.close();
}

/** Lowers `graph` to ONNX and opens an onnxruntime session computing `options.outputs`, in a worker thread. */
export function compile(graph: Graph, options: CompileOptions): Promise<Session> {
  return (options.runtime ?? defaultRuntime()).compile(graph, options);
}
