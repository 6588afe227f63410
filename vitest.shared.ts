import { defineConfig } from "vitest/config";

/**
 * Shared vitest settings for every package (each package's vitest.config.ts re-exports this).
 * CI machines have 2 cores and run several packages' suites at once, so per-test time limits are
 * generous: a limit guards against hangs, it is not a speed assertion (speed lives in `pnpm perf`).
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    include: ["src/**/*.test.ts"],
  },
});
