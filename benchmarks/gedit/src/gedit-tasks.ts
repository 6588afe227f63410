/** The eleven GEdit-Bench task types (the `task_type` column), in the order of the published tables. */
export const GEDIT_TASK_TYPES = [
  "background_change",
  "color_alter",
  "material_alter",
  "motion_change",
  "ps_human",
  "style_change",
  "subject-add",
  "subject-remove",
  "subject-replace",
  "text_change",
  "tone_transfer",
] as const;

export type GEditTaskType = (typeof GEDIT_TASK_TYPES)[number];

/** Display names used in the published result tables. */
export const GEDIT_TASK_NAMES: Readonly<Record<GEditTaskType, string>> = {
  background_change: "Background Change",
  color_alter: "Color Alteration",
  material_alter: "Material Modification",
  motion_change: "Motion Change",
  ps_human: "Portrait Beautification",
  style_change: "Style Transfer",
  "subject-add": "Subject Addition",
  "subject-remove": "Subject Removal",
  "subject-replace": "Subject Replacement",
  text_change: "Text Modification",
  tone_transfer: "Tone Transformation",
};

/** The two instruction languages, as the data spells them (`cn`, not `zh`). */
export const GEDIT_LANGUAGES = ["en", "cn"] as const;
export type GEditLanguage = (typeof GEDIT_LANGUAGES)[number];

export function isGEditTaskType(value: unknown): value is GEditTaskType {
  return typeof value === "string" && (GEDIT_TASK_TYPES as readonly string[]).includes(value);
}
