/** Test helper: the rows of the tiny GEdit-Bench used by the tests, with what the scripted judge says. */
import { solid, type TinyRow } from "./test-gedit-data.js";

/** What the scripted judge answers for an item: replies to the SC and PQ calls, in call order. */
export interface Scripted {
  row: TinyRow;
  /** Index encoded in the edited image's red channel (red = 20·index), so the PQ call knows the item. */
  index: number;
}

const source = (i: number) => solid(40, 24, [i * 10, 100, 50]);
const raw = (i: number) => solid(64, 40, [i * 10, 100, 50]);

function row(
  i: number,
  task_type: string,
  instruction: string,
  intersection: boolean,
  language = "en",
  withImages = true,
): TinyRow {
  return {
    task_type,
    key: `${i.toString(16).padStart(4, "0")}ab12cd34ef56ab12cd34ef56ab12`,
    instruction,
    instruction_language: language,
    input_image: withImages ? source(i) : null,
    input_image_raw: withImages ? raw(i) : null,
    Intersection_exist: intersection,
  };
}

export const ROWS: TinyRow[] = [
  row(1, "background_change", "Change the background to a beach.", true),
  row(2, "background_change", "Make the background a snowy forest.", false),
  row(3, "color_alter", "Make the car red.", true),
  row(4, "text_change", "Change the sign to say OPEN.", true),
  row(5, "subject-add", "Add a cat on the sofa.", true),
  row(6, "tone_transfer", "Make it look like sunset.", false),
  row(7, "teleport", "Teleport the dog.", false),
  row(8, "motion_change", "Make the man jump.", true, "en", false),
  row(9, "background_change", "把背景换成海滩。", true, "cn"),
  row(10, "color_alter", "把车变成红色。", false, "cn"),
];

export const indexOfInstruction = new Map(ROWS.map((r, i) => [r.instruction, i + 1]));
