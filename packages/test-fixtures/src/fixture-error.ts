/**
 * A fixtures folder that cannot be found or read, or a fixture kind or algorithms.json key that no test
 * claims. The message names the path or kind and says what to do.
 */
export class FixtureError extends Error {
  override readonly name = "FixtureError";
}
