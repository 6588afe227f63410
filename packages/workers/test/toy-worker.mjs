// A rollout worker process in the toy world, for the fault tests: `node toy-worker.mjs <redis-url> <delay-ms>`.
// Prints "start" as each rollout starts (then waits delay-ms) and "done" as each job ends.
import { parseQueueUrl, RolloutWorker } from "../dist/index.js";
import { loadToy } from "./toy-world.mjs";

const [url, delay = "0", lockMs = "1500"] = process.argv.slice(2);
const worker = new RolloutWorker({
  location: parseQueueUrl(url),
  load: loadToy(async () => {
    process.stdout.write("start\n");
    await new Promise((r) => setTimeout(r, Number(delay)));
  }),
  lockDurationMs: Number(lockMs),
  stalledIntervalMs: 500,
  log: (line) => process.stdout.write(`${line.includes(": step ") ? "done" : "log"} ${line}\n`),
});
await worker.ready();
process.stdout.write("ready\n");
process.on("SIGTERM", () => void worker.close().then(() => process.exit(0)));
