/**
 * Source of the worker thread that owns onnxruntime sessions. It is a string evaluated with
 * `new Worker(src, { eval: true })` so that the same code runs from the TypeScript sources (tests) and from
 * dist, with no extra build step; it only requires onnxruntime-node, whose resolved path the parent passes in
 * `workerData.ortPath` (an eval'd worker would otherwise resolve modules from the process cwd).
 *
 * Protocol (one message in, one message out, matched by `id`):
 *   { id, type: "create", sid, bytes, options, device }            → { id, ok, result: { inputs, outputs } }
 *   { id, type: "run", sid, hid, feeds: {name: {type,data,dims}} } → { id, ok, result: {name: data}, inputs }
 *   { id, type: "keep", sid, hid, feeds }                          → { id, ok }
 *   { id, type: "forget", sid, hid, names | null }                 → { id, ok }
 *   { id, type: "endProfiling", sid }                              → { id, ok, result: profile file path }
 *   { id, type: "release", sid }                                   → { id, ok }
 *   { id, type: "setValue", name, tensor: {type,data,dims} }        → { id, ok }
 *   { id, type: "readValue", name }                                → { id, ok, result: data | null (on the device) }
 *   { id, type: "deleteValues", names | null }                     → { id, ok }
 * A run may also name device values: `from` (input → value) feeds inputs from them, `to` (output → value)
 * stores outputs in them instead of sending them back (the reply's `stored` says where each one lives:
 * "cpu" or "gpu-buffer"). Device values belong to this worker and are shared by its sessions; a failed
 * run stores nothing.
 * Failures answer { id, ok: false, error: { name, message } }. A run's reply, failed or not, hands the feed
 * buffers back (`inputs`, moved, not copied) so the parent reuses them as staging buffers for its next run.
 * Outputs are moved too: onnxruntime-node copies each output into a fresh ArrayBuffer, which is the
 * caller's to keep. `hid` names a Session handle; kept feeds belong to one handle of a session.
 */
export const WORKER_SOURCE = `
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const ort = require(workerData.ortPath);
const fs = require("node:fs");
const path = require("node:path");
// sid → { session, kept: Map<hid, Map<name, ort.Tensor>> }
const sessions = new Map();
// Device values: name → ort.Tensor (in host memory, or on the device for a WebGPU output kept there).
const values = new Map();

function dropValue(tensor) {
  // A tensor on the device holds a GPU buffer until disposed; host tensors are garbage collected.
  if (tensor && tensor.location === "gpu-buffer") tensor.dispose();
}

function cudaMissing(message) {
  return /providers_shared|providers_cuda|cudnn|cublas|libcuda|cuda.*(not|fail)|backend not found/i.test(message);
}

// Dawn found no adapter (no Vulkan loader, no driver, or a driver it refuses), or could not load Vulkan.
function webgpuMissing(message) {
  return /adapter_result|WebGPU adapter|No supported adapters|libvulkan|vulkan/i.test(message);
}

function live(sid) {
  const entry = sessions.get(sid);
  if (!entry) throw new Error("session " + sid + " was released");
  return entry;
}

async function handle(msg) {
  switch (msg.type) {
    case "create": {
      let session;
      // onnxruntime names the profile file ("<prefix>_<date>.json") when the session starts, without
      // saying which: the file that appears during create is this session's.
      const prefix = msg.options.profileFilePrefix;
      const profiles = () => {
        const dir = path.dirname(path.resolve(prefix));
        const base = path.basename(prefix);
        if (!fs.existsSync(dir)) return [];
        return fs.readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith(".json")).map((f) => path.join(dir, f));
      };
      const before = prefix ? new Set(profiles()) : undefined;
      try {
        session = await ort.InferenceSession.create(msg.bytes, msg.options);
      } catch (e) {
        const message = String(e && e.message || e);
        const unavailable =
          msg.device === "cuda" && cudaMissing(message)
            ? "CudaUnavailableError"
            : msg.device === "webgpu" && webgpuMissing(message)
              ? "WebGpuUnavailableError"
              : undefined;
        if (unavailable) {
          // Dawn's own words, without onnxruntime's source location and function signature.
          const dawn = /Failed to get a WebGPU adapter[^\\n]*/.exec(message);
          const err = new Error(dawn ? dawn[0].trim() : message);
          err.name = unavailable;
          throw err;
        }
        throw e;
      }
      const profile = prefix ? { prefix, file: profiles().filter((f) => !before.has(f)).sort().pop() } : undefined;
      sessions.set(msg.sid, { session, kept: new Map(), profile });
      return { result: { inputs: session.inputNames, outputs: session.outputNames } };
    }
    case "run": {
      const { session, kept } = live(msg.sid);
      const feeds = {};
      const mine = kept.get(msg.hid);
      if (mine) for (const [name, tensor] of mine) feeds[name] = tensor;
      const lent = new Set();
      for (const name in msg.feeds) {
        const f = msg.feeds[name];
        feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
        lent.add(f.data.buffer);
      }
      for (const input in msg.from || {}) {
        const tensor = values.get(msg.from[input]);
        if (!tensor) throw new Error('no device value "' + msg.from[input] + '" for input "' + input + '"');
        feeds[input] = tensor;
      }
      const out = await session.run(feeds);
      const result = {};
      const transfer = new Set();
      const stored = {};
      for (const name in msg.to || {}) {
        const value = msg.to[name];
        const before = values.get(value);
        values.set(value, out[name]);
        stored[value] = out[name].location;
        if (before !== out[name]) dropValue(before);
        delete out[name];
      }
      for (const name in out) {
        let data = out[name].data;
        // Own the bytes so they can be moved, not copied, to the parent. An output sharing a lent feed
        // buffer (were the binding ever to return one) is copied: that buffer goes back to the staging pool
        // and the next run would overwrite the caller's output.
        if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength || lent.has(data.buffer)) {
          data = data.slice();
        }
        result[name] = data;
        transfer.add(data.buffer);
      }
      return { result, transfer: [...transfer], stored };
    }
    case "setValue": {
      const f = msg.tensor;
      const before = values.get(msg.name);
      values.set(msg.name, new ort.Tensor(f.type, f.data, f.dims));
      dropValue(before);
      return { result: null };
    }
    case "readValue": {
      const tensor = values.get(msg.name);
      if (!tensor) throw new Error('no device value "' + msg.name + '"');
      // Reading a GPU tensor's data in the Node binding ends the process; the parent reads those through a
      // session with host outputs instead.
      if (tensor.location !== "cpu") return { result: null };
      const data = tensor.data.slice();
      return { result: data, transfer: [data.buffer] };
    }
    case "deleteValues": {
      for (const name of msg.names || [...values.keys()]) {
        dropValue(values.get(name));
        values.delete(name);
      }
      return { result: null };
    }
    case "keep": {
      const { kept } = live(msg.sid);
      let mine = kept.get(msg.hid);
      if (!mine) kept.set(msg.hid, (mine = new Map()));
      for (const name in msg.feeds) {
        const f = msg.feeds[name];
        mine.set(name, new ort.Tensor(f.type, f.data, f.dims));
      }
      return { result: null };
    }
    case "forget": {
      const entry = sessions.get(msg.sid);
      const mine = entry && entry.kept.get(msg.hid);
      if (mine) {
        if (msg.names) for (const name of msg.names) mine.delete(name);
        if (!msg.names || mine.size === 0) entry.kept.delete(msg.hid);
      }
      return { result: null };
    }
    case "endProfiling": {
      const { session, profile } = live(msg.sid);
      if (!profile) throw new Error("endProfiling: the session was not opened with the profile option");
      session.endProfiling();
      if (!profile.file) throw new Error("endProfiling: onnxruntime wrote no profile under " + profile.prefix);
      return { result: profile.file };
    }
    case "release": {
      const entry = sessions.get(msg.sid);
      sessions.delete(msg.sid);
      if (entry) await entry.session.release();
      return { result: null };
    }
    default:
      throw new Error("unknown message type " + msg.type);
  }
}

// One message at a time: a release never overtakes a run queued before it.
let chain = Promise.resolve();
parentPort.on("message", (msg) => {
  chain = chain.then(() => respond(msg));
});

function respond(msg) {
  // The feed buffers of a run go back to the parent whatever happened, so a failed run loses none.
  const inputs = {};
  const lent = [];
  if (msg.type === "run" && msg.feeds) {
    for (const name in msg.feeds) {
      const data = msg.feeds[name].data;
      inputs[name] = data;
      if (!lent.includes(data.buffer)) lent.push(data.buffer);
    }
  }
  const send = (reply, transfer) => {
    try {
      parentPort.postMessage(reply, transfer);
    } catch (e) {
      parentPort.postMessage(reply);
    }
  };
  return handle(msg).then(
    ({ result, transfer, stored }) => {
      const moved = (transfer || []).filter((b) => !lent.includes(b));
      send({ id: msg.id, ok: true, result, inputs, stored }, moved.concat(lent));
    },
    (e) => {
      send(
        {
          id: msg.id,
          ok: false,
          error: { name: (e && e.name) || "Error", message: String((e && e.message) || e) },
          inputs,
        },
        lent,
      );
    },
  );
}
`;
