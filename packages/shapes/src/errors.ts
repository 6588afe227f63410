/**
 * Typed errors of the shapes world. Each says which input was wrong and what to do, so a judge
 * server or a data-set writer can report it without guessing.
 */
export class ShapesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A scene breaks the world's rules (unknown colour or kind, shapes outside the grid, invisible shapes…). */
export class InvalidSceneError extends ShapesError {}

/** An edit cannot be applied to the scene it was given (e.g. it names an empty cell). */
export class InvalidEditError extends ShapesError {}

/** A requirement string carries no readable `[shapes:v1:…]` tag. */
export class RequirementParseError extends ShapesError {}

/** An image is malformed or does not match the size of the image it is compared with. */
export class ImageMismatchError extends ShapesError {}

/** An instruction has more words than the fixed token length. */
export class InstructionTooLongError extends ShapesError {}

/** An option passed to a generator or writer is out of range. */
export class InvalidOptionsError extends ShapesError {}
