/**
 * The ImgEdit-Bench Basic judge rubrics: one per edit type, three criteria scored 1–5, the second and
 * third never above the first. The structure and the meaning of every criterion and level follow the
 * official `Benchmark/Basic/prompts.json`; the wording is ours. Two official rubrics describe inputs
 * the judge never gets (a style reference image, a lone cut-out), so ours describe the two images that
 * are actually sent (see the README, "Defects fixed in the open").
 */

/** The nine Basic edit types, in the leaderboard's column order. `compose` is reported as "Hybrid". */
export const IMGEDIT_CATEGORIES = [
  "add",
  "adjust",
  "extract",
  "replace",
  "remove",
  "background",
  "style",
  "compose",
  "action",
] as const;

export type ImgEditCategory = (typeof IMGEDIT_CATEGORIES)[number];

/** Leaderboard names of the edit types. */
export const IMGEDIT_CATEGORY_NAMES: Readonly<Record<ImgEditCategory, string>> = {
  add: "Add",
  adjust: "Adjust",
  extract: "Extract",
  replace: "Replace",
  remove: "Remove",
  background: "Background",
  style: "Style",
  compose: "Hybrid",
  action: "Action",
};

/** Recorded with every result: a change of wording is a change of judge protocol. */
export const IMGEDIT_RUBRIC_VERSION = "edit-r1/imgedit-basic-rubric@1";

export function isImgEditCategory(value: unknown): value is ImgEditCategory {
  return typeof value === "string" && (IMGEDIT_CATEGORIES as readonly string[]).includes(value);
}

export interface ImgEditCriterion {
  /** The label the judge must print before its score. */
  label: string;
  /** What the criterion judges. */
  focus: string;
  /** Anchors for the scores 1, 2, 3, 4, 5 (index 0 is score 1). */
  levels: readonly [string, string, string, string, string];
}

export interface ImgEditRubric {
  category: ImgEditCategory;
  /** Who the judge is asked to be. */
  role: string;
  /** What the two images are, for this edit type. */
  images: string;
  criteria: readonly [ImgEditCriterion, ImgEditCriterion, ImgEditCriterion];
}

const TWO_IMAGES = "You get two images: first the original image, then the edited result.";

export const IMGEDIT_RUBRICS: Readonly<Record<ImgEditCategory, ImgEditRubric>> = {
  add: {
    category: "add",
    role: "an expert rater of image edits that insert a new object into a scene",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Prompt Compliance",
        focus:
          "is the requested object there, of the right kind, with the requested attributes, position and count?",
        levels: [
          "nothing was added, or something unrelated to the instruction",
          "an object was added but its kind or most of its requested attributes are wrong",
          "the right kind of object, but an attribute, the place or the number is clearly off",
          "the right object in roughly the right place, with one small deviation",
          "exactly what was asked: kind, attributes, place and number all right, the rest of the image essentially untouched",
        ],
      },
      {
        label: "Visual Naturalness",
        focus:
          "does the added object blend in: no pasted look, no halo, matching style, sharpness and colour?",
        levels: [
          "an obvious cut-and-paste, clashing with the image",
          "strong seams, halos or a mismatched style or resolution",
          "noticeable blending problems on a closer look",
          "blends well with minor flaws",
          "indistinguishable from a photo taken with the object in it",
        ],
      },
      {
        label: "Physical & Detail Coherence",
        focus:
          "are shadows, perspective, scale and contact with surfaces plausible, and is the background unharmed?",
        levels: [
          "physically impossible (floating, wrong scale) or the background is damaged",
          "several physical errors such as missing shadows or a broken perspective",
          "plausible overall with one clear physical error",
          "small inconsistencies only a careful look reveals",
          "shadows, perspective, scale and contact all correct, the background intact",
        ],
      },
    ],
  },
  adjust: {
    category: "adjust",
    role: "an expert rater of image edits that change an attribute (colour, material, texture…) of an object",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Prompt Compliance",
        focus:
          "was only the target's requested attribute changed, as asked, with its shape and everything else kept?",
        levels: [
          "the attribute was not changed, or the object's geometry was changed instead",
          "the change is wrong or lands on the wrong object",
          "the right object changed, but only partly or not in the requested way",
          "the requested change, with a small inaccuracy",
          "exactly the requested attribute changed on exactly the target, its shape kept",
        ],
      },
      {
        label: "Visual Seamlessness",
        focus: "no colour spilling over the edges, clean boundaries, tones consistent with the scene?",
        levels: [
          "heavy spill, blotches or broken edges",
          "clearly visible spill or tone mismatch",
          "some spill or edge problems",
          "clean with tiny flaws",
          "seamless: crisp boundaries and consistent tone",
        ],
      },
      {
        label: "Physical & Detail Fidelity",
        focus: "do highlights, reflections, shading and material look real for the new attribute?",
        levels: [
          "flat or painted-on, no believable material",
          "lighting and material clearly wrong",
          "plausible but with visibly lost detail or wrong highlights",
          "convincing with small flaws",
          "fully convincing lighting, reflections and texture",
        ],
      },
    ],
  },
  extract: {
    category: "extract",
    role: "an expert rater of object extraction (cutting one object out onto a plain white background)",
    images:
      "You get two images: first the original image, then the result, which should show only the requested object on a pure white background.",
    criteria: [
      {
        label: "Object Selection & Identity",
        focus: "is the extracted object exactly the requested instance, complete and recognisable?",
        levels: [
          "the wrong object, no object, or the whole scene",
          "a related but wrong object, or a heavily mutilated one",
          "the right object with large parts missing or extra objects included",
          "the right object, nearly complete",
          "exactly the requested instance, complete and faithful to the original",
        ],
      },
      {
        label: "Mask Precision & Background Purity",
        focus: "is the background pure white, with clean edges and no leftovers of the scene?",
        levels: [
          "the background is not white or most of the scene remains",
          "large leftovers of the scene or ragged edges",
          "some leftovers, halos or cut-off edges",
          "clean with minor edge flaws",
          "a pure white background and precise edges",
        ],
      },
      {
        label: "Object Integrity & Visual Quality",
        focus: "is the object itself undistorted, sharp and true to its original appearance?",
        levels: [
          "unrecognisable or badly distorted",
          "strong distortion, blur or colour changes",
          "noticeable degradation",
          "good quality with slight softness or colour drift",
          "as crisp and true as in the original",
        ],
      },
    ],
  },
  replace: {
    category: "replace",
    role: "an expert rater of image edits that replace one object with another",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Prompt Compliance",
        focus:
          "were all and only the targets replaced, by the requested kind of object, in the right number and pose?",
        levels: [
          "nothing replaced, or replaced by something unrelated",
          "the wrong target replaced, or the new object is of the wrong kind",
          "remnants of the old object remain or the number is wrong",
          "the right replacement with a small deviation",
          "every target replaced by exactly what was asked, nothing else touched",
        ],
      },
      {
        label: "Visual Naturalness",
        focus: "does the new object fit the scene's style, lighting and resolution without seams?",
        levels: [
          "obviously pasted in",
          "strong seams or mismatched style",
          "noticeable blending problems",
          "natural with minor flaws",
          "looks photographed in place",
        ],
      },
      {
        label: "Physical & Detail Integrity",
        focus: "are scale, perspective, shadows and contact right, and is the surrounding scene intact?",
        levels: [
          "physically impossible or the surroundings are damaged",
          "several physical errors",
          "one clear physical error",
          "small inconsistencies",
          "fully coherent with an intact scene",
        ],
      },
    ],
  },
  remove: {
    category: "remove",
    role: "an expert rater of image edits that remove objects",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Prompt Compliance",
        focus: "were all and only the requested objects removed?",
        levels: [
          "nothing removed, or the wrong thing removed",
          "the target is mostly still there",
          "the target is partly removed, or another object was removed too",
          "the target is gone but a few small unrelated things were removed by mistake",
          "every requested object is gone and nothing else is",
        ],
      },
      {
        label: "Visual Naturalness",
        focus: "are there no erase marks, smudges, ghost outlines or blurry patches where the object was?",
        levels: [
          "an obvious hole, smear or ghost of the object",
          "clearly visible erase marks",
          "traces visible on a closer look",
          "nearly invisible traces",
          "no trace that anything was ever there",
        ],
      },
      {
        label: "Physical & Detail Integrity",
        focus:
          "is the uncovered area filled in plausibly (continued lines, texture, lighting), with no leftover shadows or reflections?",
        levels: [
          "the fill makes no physical sense or leaves gaps",
          "the fill breaks lines, textures or lighting badly",
          "plausible fill with a clear flaw (leftover shadow, broken line)",
          "good fill with small flaws",
          "the fill continues the scene perfectly",
        ],
      },
    ],
  },
  background: {
    category: "background",
    role: "an expert rater of image edits that change the background behind the main subject",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Instruction Compliance",
        focus: "does the new background match the instruction, with the foreground subject left untouched?",
        levels: [
          "the background did not change, or the foreground was replaced too",
          "a new background that does not match the instruction",
          "roughly the requested background, or the foreground visibly altered",
          "the requested background with small deviations",
          "exactly the requested background, the foreground pixel-faithful",
        ],
      },
      {
        label: "Visual Seamlessness",
        focus: "are the subject's edges clean, without halos, and do textures and resolution match?",
        levels: [
          "a crude cut-out with halos",
          "clearly visible edge artefacts",
          "some edge or texture problems",
          "clean with minor flaws",
          "seamless edges and matching texture",
        ],
      },
      {
        label: "Physical Consistency",
        focus: "do lighting, perspective, scale and depth of subject and new background agree?",
        levels: [
          "subject and background contradict each other",
          "strongly mismatched light or perspective",
          "plausible with one clear mismatch",
          "consistent with small flaws",
          "fully consistent light, perspective and depth",
        ],
      },
    ],
  },
  style: {
    category: "style",
    role: "an expert rater of style transfer edits",
    images:
      "You get two images: first the original image, then the result, which should show the same content in the style named by the instruction (no separate style reference is given).",
    criteria: [
      {
        label: "Style Fidelity",
        focus:
          "does the whole result carry the requested style's characteristic colours, strokes and textures?",
        levels: [
          "no sign of the requested style",
          "a faint or wrong style",
          "the style is recognisable but incomplete or uneven",
          "a convincing style with small lapses",
          "the requested style applied fully and consistently",
        ],
      },
      {
        label: "Content Preservation",
        focus: "are the original layout, objects and identities still there and recognisable?",
        levels: [
          "the content is lost or replaced",
          "major objects missing or changed",
          "the main content kept, noticeable changes of layout or objects",
          "content kept with small changes",
          "layout and every object preserved",
        ],
      },
      {
        label: "Rendering Quality",
        focus: "is the result free of noise, banding, broken strokes and other rendering artefacts?",
        levels: [
          "severe artefacts",
          "many visible artefacts",
          "some artefacts",
          "clean with minor artefacts",
          "clean, high-quality rendering",
        ],
      },
    ],
  },
  compose: {
    category: "compose",
    role: "an expert rater of image edits that combine several operations on several objects",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Instruction Compliance",
        focus: "did every object named in the instruction receive its requested operation?",
        levels: [
          "none of the requested operations was done",
          "only one of the objects was edited as asked",
          "most operations done, one missing or wrong",
          "every operation done with a small inaccuracy",
          "every object received exactly its requested operation",
        ],
      },
      {
        label: "Visual Naturalness",
        focus: "do all edited regions blend in without seams, halos or style mismatches?",
        levels: [
          "obviously edited everywhere",
          "strong seams or mismatches",
          "noticeable problems in some regions",
          "natural with minor flaws",
          "looks unedited",
        ],
      },
      {
        label: "Physical Consistency & Fine Detail",
        focus: "are lighting, shadows, scale and fine detail coherent across all edited regions?",
        levels: [
          "physically impossible results",
          "several physical errors or lost detail",
          "one clear error",
          "small inconsistencies",
          "fully coherent with fine detail kept",
        ],
      },
    ],
  },
  action: {
    category: "action",
    role: "an expert rater of image edits that change a person's or animal's action, pose or expression",
    images: TWO_IMAGES,
    criteria: [
      {
        label: "Action Fidelity",
        focus: "does the subject now perform the requested action, pose or expression?",
        levels: [
          "no change, or an unrelated change",
          "a change in the wrong direction",
          "partly the requested action or expression",
          "the requested action with a small deviation",
          "exactly the requested action, pose or expression",
        ],
      },
      {
        label: "Identity Preservation",
        focus: "is it still the same individual: face, hair, clothes, markings and body type?",
        levels: [
          "a different individual",
          "identity largely lost",
          "recognisable but with clear changes",
          "the same individual with small changes",
          "identity fully preserved",
        ],
      },
      {
        label: "Visual & Anatomical Coherence",
        focus:
          "is the anatomy plausible (limbs, hands, joints) and the rest of the image clean and consistent?",
        levels: [
          "broken anatomy or a broken image",
          "clear anatomical errors",
          "one noticeable flaw",
          "plausible with small flaws",
          "anatomically and visually flawless",
        ],
      },
    ],
  },
};

/**
 * The judge prompt for one sample: role, images, the three criteria with their level anchors, the cap
 * rule, the reply format (one `Label: n` line per criterion, which the parser reads) and the instruction.
 */
export function renderImgEditPrompt(category: ImgEditCategory, instruction: string): string {
  const rubric = IMGEDIT_RUBRICS[category];
  const [first] = rubric.criteria;
  const lines: string[] = [
    `You are ${rubric.role}. ${rubric.images}`,
    "Rate the edited result on the three criteria below, each with an integer from 1 (worst) to 5 (best).",
    "",
  ];
  rubric.criteria.forEach((c, i) => {
    lines.push(`${i + 1}. ${c.label}: ${c.focus}`);
    for (const [level, anchor] of c.levels.entries()) lines.push(`   ${level + 1}: ${anchor}`);
    lines.push("");
  });
  lines.push(
    `Rule: the ${rubric.criteria[1].label} and ${rubric.criteria[2].label} scores must not be higher than the ${first.label} score; an edit that ignores the instruction cannot earn quality points.`,
    "",
    "Reply in exactly this format, nothing else, each score a bare integer:",
    "Brief reasoning: <at most 20 words>",
    ...rubric.criteria.map((c) => `${c.label}: <1-5>`),
    "",
    `Editing instruction: ${instruction}`,
    "The original image and the edited image follow.",
  );
  return lines.join("\n");
}
