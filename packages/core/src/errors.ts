/** Base class of every error @edit-r1/core throws on purpose, so callers can tell them from bugs. */
export class EditR1Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

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
