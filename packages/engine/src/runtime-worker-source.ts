/**
 * Source of the worker thread that owns onnxruntime sessions. It is a string evaluated with
 * `new Worker(src, { eval: true })` so that the same code runs from the TypeScript sources (tests) and from
 * dist, with no extra build step; it only requires onnxruntime-node, whose resolved path the parent passes in
 * `workerData.ortPath` (an eval'd worker would otherwise resolve modules from the process cwd).
 *
 * Protocol (one message in, one message out, matched by `id`):
 *   { id, type: "create", sid, bytes, options, cuda }        → { id, ok, result: { inputs, outputs } }
 *   { id, type: "run", sid, feeds: {name: {type,data,dims}} } → { id, ok, result: {name: {data}} }
 *   { id, type: "release", sid }                              → { id, ok }
 * Failures answer { id, ok: false, error: { name, message } }.
 */
export const WORKER_SOURCE = `
"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const ort = require(workerData.ortPath);
const sessions = new Map();

function cudaMissing(message) {
  return /providers_shared|providers_cuda|cudnn|cublas|libcuda|cuda.*(not|fail)|backend not found/i.test(message);
}

async function handle(msg) {
  switch (msg.type) {
    case "create": {
      let session;
      try {
        session = await ort.InferenceSession.create(msg.bytes, msg.options);
      } catch (e) {
        const message = String(e && e.message || e);
        if (msg.cuda && cudaMissing(message)) {
          const err = new Error(message);
          err.name = "CudaUnavailableError";
          throw err;
        }
        throw e;
      }
      sessions.set(msg.sid, session);
      return { result: { inputs: session.inputNames, outputs: session.outputNames } };
    }
    case "run": {
      const session = sessions.get(msg.sid);
      if (!session) throw new Error("session " + msg.sid + " was released");
      const feeds = {};
      for (const name in msg.feeds) {
        const f = msg.feeds[name];
        feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
      }
      const out = await session.run(feeds);
      const result = {};
      const transfer = [];
      for (const name in out) {
        let data = out[name].data;
        // Own the bytes so they can be moved, not copied, to the parent.
        if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = data.slice();
        result[name] = data;
        transfer.push(data.buffer);
      }
      return { result, transfer };
    }
    case "release": {
      const session = sessions.get(msg.sid);
      sessions.delete(msg.sid);
      if (session) await session.release();
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
  return handle(msg).then(
    ({ result, transfer }) => {
      try {
        parentPort.postMessage({ id: msg.id, ok: true, result }, transfer || []);
      } catch (e) {
        parentPort.postMessage({ id: msg.id, ok: true, result });
      }
    },
    (e) => {
      parentPort.postMessage({
        id: msg.id,
        ok: false,
        error: { name: (e && e.name) || "Error", message: String((e && e.message) || e) },
      });
    },
  );
}
`;
