/**
 * Base class of every error Edit-R1 throws on purpose (engine, core, models, hub, rewards, benchmarks, cli), so
 * callers can tell them from bugs with one `instanceof EditR1Error`. It lives in the engine, the lowest layer
 * that throws, so every package above can extend it; `@edit-r1/core` re-exports it. The error's `name` is its
 * class name.
 */
export class EditR1Error extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
