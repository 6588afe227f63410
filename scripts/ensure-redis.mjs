#!/usr/bin/env node
// Makes sure `redis-server` is on this machine for the tests that start one (packages/workers, packages/cli):
// installs Debian's package when it is missing and we may (root with apt-get); otherwise says how, and fails.
import { spawnSync } from "node:child_process";

const has = (cmd, args) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
if (has("redis-server", ["--version"])) process.exit(0);
const root = process.getuid?.() === 0;
if (!root || !has("apt-get", ["--version"])) {
  console.error(
    "redis-server is missing; the scale-out tests start one on loopback. Install it (Debian/Ubuntu: " +
      "`sudo apt-get install redis-server`; macOS: `brew install redis`) and run the tests again.",
  );
  process.exit(1);
}
console.error("redis-server is missing: installing Debian's redis-server package …");
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
for (const args of [
  ["update", "-qq"],
  ["install", "-y", "-qq", "--no-install-recommends", "redis-server"],
]) {
  const r = spawnSync("apt-get", args, { stdio: "inherit", env });
  if (r.status !== 0) {
    console.error(`apt-get ${args.join(" ")} failed (exit ${r.status}); install redis-server by hand.`);
    process.exit(1);
  }
}
// The package starts a system service; the tests run their own servers on free ports instead.
spawnSync("service", ["redis-server", "stop"], { stdio: "ignore" });
process.exit(has("redis-server", ["--version"]) ? 0 : 1);
