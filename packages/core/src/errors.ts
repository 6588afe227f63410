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
