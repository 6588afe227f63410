import type { Graph, Tensor } from "./graph.js";
import {
  compile,
  type Device,
  type DeviceValues,
  type Runtime,
  RuntimeError,
  type Session,
} from "./runtime.js";

export interface SessionCacheOptions {
  device?: Device | undefined;
  /** onnxruntime intra-op threads per session. */
  threads?: number | undefined;
  runtime?: Runtime | undefined;
}

/**
 * onnxruntime sessions compiled on demand and kept by key (a shape signature: "vae-encode:512x512"), so each
 * graph is built and lowered once. A failed compile is not kept, so a later call retries and reports it.
 */
export class SessionCache {
  private readonly sessions = new Map<string, Promise<Session>>();
  private closed = false;

  constructor(private readonly options: SessionCacheOptions = {}) {}

  get(
    key: string,
    build: () => {
      graph: Graph;
      outputs: Record<string, Tensor>;
      /** For sessions whose runs read and write device values (see `SessionOptions`). */
      values?: DeviceValues;
      deviceOutputs?: readonly string[];
    },
  ): Promise<Session> {
    if (this.closed)
      return Promise.reject(new RuntimeError(`session "${key}": the model was closed; load it again`));
    let entry = this.sessions.get(key);
    if (!entry) {
      const { graph, outputs, values, deviceOutputs } = build();
      const { device, threads, runtime } = this.options;
      entry = compile(graph, {
        outputs,
        ...(values ? { values } : {}),
        ...(deviceOutputs ? { deviceOutputs } : {}),
        ...(device ? { device } : {}),
        ...(threads !== undefined ? { threads } : {}),
        ...(runtime ? { runtime } : {}),
      });
      this.sessions.set(key, entry);
      entry.catch(() => {
        if (this.sessions.get(key) === entry) this.sessions.delete(key);
      });
    }
    return entry;
  }

  /** Releases every session; later `get`s fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = await Promise.allSettled(this.sessions.values());
    this.sessions.clear();
    await Promise.all(all.map((s) => (s.status === "fulfilled" ? s.value.dispose() : undefined)));
  }
}
