import { EditR1Error } from "@edit-r1/engine";

/**
 * `EditR1Error`, the base class of every error Edit-R1 throws on purpose, lives in the engine (the lowest layer
 * that throws); core re-exports it so `import { EditR1Error } from "@edit-r1/core"` works for every layer above.
 */
export { EditR1Error };

/** A configuration value is out of range or unsupported. */
export class ConfigError extends EditR1Error {}

/** Arrays handed to an algorithm disagree in length or shape. */
export class ShapeError extends EditR1Error {}

/** A file a run keeps in its output folder (journal, run identity) cannot be read back. */
export class RunFileError extends EditR1Error {
  constructor(
    readonly path: string,
    problem: string,
    readonly line?: number,
  ) {
    super(
      `${path}${line !== undefined ? `:${line}` : ""}: ${problem}. Move the file aside (or use another output folder) to start over.`,
    );
  }
}
