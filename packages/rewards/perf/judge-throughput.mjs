#!/usr/bin/env node
// Judge reward throughput against the local judge server: scored items/s and p50/p99 latency at
// concurrency 16 with 512×512 images, split into client-side image encoding, server-side decoding and
// the HTTP exchange. Runs against dist/ (build first). Client and server share this process, so on a
// small machine they compete for the same cores; the ratios are the point, not the absolute numbers.
//
//   node packages/rewards/perf/judge-throughput.mjs [--items 256] [--concurrency 16] [--size 512]
//
// Writes .perf/rewards-judge-throughput.json at the repository root (EDIT_R1_PERF_DIR overrides).
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  createChatClient,
  createMllmJudgeReward,
  createScriptedJudge,
  decodeImageDataUrl,
  encodeImageDataUrl,
  startJudgeServer,
} from "../dist/index.js";

const { values } = parseArgs({
  options: {
    items: { type: "string", default: "256" },
    concurrency: { type: "string", default: "16" },
    size: { type: "string", default: "512" },
  },
});
const items = Number(values.items);
const concurrency = Number(values.concurrency);
const size = Number(values.size);

function image(seed) {
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      // Smooth shapes plus a little texture, so JPEG sizes resemble photographs more than flat fills.
      const r = Math.hypot(x - size / 2, y - size / 2);
      data[i] = (r * 0.7 + seed * 29 + (((x * 13) ^ (y * 7)) % 9)) & 255;
      data[i + 1] = ((x + seed * 11) * 0.5 + (y % 16)) & 255;
      data[i + 2] = (((x ^ y) >> 2) + seed * 17) & 255;
    }
  }
  return { width: size, height: size, data };
}

function summary(samples) {
  const s = samples.slice().sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length, Math.max(1, Math.ceil(q * s.length))) - 1];
  return {
    count: s.length,
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    p50: at(0.5),
    p99: at(0.99),
    max: s.at(-1),
  };
}

/** Runs fn(i) for i < n with at most `limit` in flight; returns per-call durations and wall time. */
async function pool(n, limit, fn) {
  const durations = new Array(n);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(limit, n) }, async () => {
      while (next < n) {
        const i = next++;
        const s = performance.now();
        await fn(i);
        durations[i] = performance.now() - s;
      }
    }),
  );
  return { wallMs: performance.now() - t0, latency: summary(durations) };
}

const ms = (v) => `${v.toFixed(1)} ms`;
const rate = (n, wallMs) => n / (wallMs / 1000);

const inputs = Array.from({ length: items }, (_, i) => ({
  key: `item-${i}`,
  instruction: `replace object ${i} with a red cube`,
  requirement: "only the named object changes",
  source: image(i),
  edited: image(i + 100_000),
}));

const judge = createScriptedJudge({
  id: "perf-judge",
  respond: () => ({ distribution: [0.05, 0.05, 0.1, 0.2, 0.4, 0.2] }),
});
// The scripted judge keeps every request; a perf run would otherwise hold all decoded images.
const respond = judge.judge.bind(judge);
judge.judge = (req) => {
  const reply = respond(req);
  judge.calls.length = 0;
  return reply;
};
const server = await startJudgeServer({ models: [judge] });

try {
  // Warm-up: sharp's thread pool, sockets, JIT.
  await createMllmJudgeReward({ url: server.url, model: "perf-judge", cache: false, env: {} }).score(
    inputs.slice(0, 8),
  );

  // 1. Client-side encoding only: two 512² JPEGs per item.
  const urls = new Array(items);
  const encode = await pool(items, concurrency, async (i) => {
    urls[i] = await Promise.all([encodeImageDataUrl(inputs[i].source), encodeImageDataUrl(inputs[i].edited)]);
  });
  const bytesPerItem = urls.reduce((s, [a, b]) => s + a.length + b.length, 0) / items;

  // 2. Server-side decoding only: what the judge server does before the model runs.
  const decode = await pool(items, concurrency, async (i) => {
    await Promise.all(urls[i].map((u) => decodeImageDataUrl(u)));
  });

  // 3. HTTP exchange with pre-encoded images (includes the server's decode and JSON work).
  const client = createChatClient({ baseUrl: server.url, concurrency });
  const http = await pool(items, concurrency, async (i) => {
    await client.complete({
      model: "perf-judge",
      messages: [
        {
          role: "user",
          content: [
            { type: "image_url", image_url: { url: urls[i][0] } },
            { type: "image_url", image_url: { url: urls[i][1] } },
            { type: "text", text: inputs[i].instruction },
          ],
        },
      ],
      max_tokens: 1,
      logprobs: true,
      top_logprobs: 20,
    });
  });

  // 4. End to end through the reward (hashing, encoding, request, parsing), cache off.
  const reward = createMllmJudgeReward({
    url: server.url,
    model: "perf-judge",
    cache: false,
    concurrency,
    env: {},
  });
  const t0 = performance.now();
  await reward.score(inputs);
  const e2eWall = performance.now() - t0;
  const stats = reward.stats();

  const result = {
    benchmark: "rewards/judge-throughput",
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    items,
    concurrency,
    imageSize: size,
    requestBytesPerItem: Math.round(bytesPerItem),
    encode: { itemsPerS: rate(items, encode.wallMs), perItemMs: encode.latency },
    serverDecode: { itemsPerS: rate(items, decode.wallMs), perItemMs: decode.latency },
    http: { itemsPerS: rate(items, http.wallMs), latencyMs: http.latency },
    endToEnd: {
      itemsPerS: rate(items, e2eWall),
      requestLatencyMs: stats.http.latencyMs,
      encodeMs: stats.encodeMs,
      retries: stats.http.retries,
      failed: stats.failed,
    },
    ratios: {
      encodeShareOfEndToEnd: encode.wallMs / e2eWall,
      serverDecodeShareOfHttp: decode.wallMs / http.wallMs,
      endToEndOverHttpOnly: e2eWall / http.wallMs,
    },
  };

  console.log(
    `judge throughput: ${items} items of ${size}² at concurrency ${concurrency}, ${result.cpus} CPUs`,
  );
  console.log(`  request size        ${(bytesPerItem / 1024).toFixed(0)} KiB per item (two JPEG data URLs)`);
  console.log(
    `  encode only         ${result.encode.itemsPerS.toFixed(1)} items/s  p50 ${ms(encode.latency.p50)}  p99 ${ms(encode.latency.p99)}`,
  );
  console.log(
    `  server decode only  ${result.serverDecode.itemsPerS.toFixed(1)} items/s  p50 ${ms(decode.latency.p50)}  p99 ${ms(decode.latency.p99)}`,
  );
  console.log(
    `  HTTP (pre-encoded)  ${result.http.itemsPerS.toFixed(1)} items/s  p50 ${ms(http.latency.p50)}  p99 ${ms(http.latency.p99)}`,
  );
  console.log(
    `  end to end          ${result.endToEnd.itemsPerS.toFixed(1)} items/s  request p50 ${ms(stats.http.latencyMs.p50)}  p99 ${ms(stats.http.latencyMs.p99)}`,
  );
  console.log(
    `  ratios: encode/e2e ${result.ratios.encodeShareOfEndToEnd.toFixed(2)}  decode/http ${result.ratios.serverDecodeShareOfHttp.toFixed(2)}  e2e/http ${result.ratios.endToEndOverHttpOnly.toFixed(2)}`,
  );

  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
  const outDir = process.env.EDIT_R1_PERF_DIR ?? join(root, ".perf");
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, "rewards-judge-throughput.json");
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`  wrote ${file}`);
} finally {
  await server.close();
}
