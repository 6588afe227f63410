import { decodeImage, type EditRequest, encodePng, type RgbImage } from "@edit-r1/core";
import { writeFileAtomic } from "@edit-r1/engine";
import { UsageError } from "../args.js";
import { type CommandContext, requireFlag, stringFlag } from "../context.js";
import { checkOutFile } from "../out-folder.js";
import { checkAdapterFlags, loadAdapter } from "../registry.js";
import { adapterOptions } from "./bench.js";

/** `edit-r1 edit`: one instruction on one image (or several, `--image` repeated, for multi-image models). */
export async function edit(ctx: CommandContext): Promise<number> {
  const adapter = await loadAdapter(requireFlag(ctx, "adapter", "e.g. --adapter flux-kontext"));
  const flag = ctx.values.image;
  const imagePaths = (Array.isArray(flag) ? flag : [flag]).filter((v): v is string => typeof v === "string");
  if (imagePaths.length === 0) requireFlag(ctx, "image", "the source image, any format sharp reads");
  const instruction = stringFlag(ctx, "instruction");
  if (instruction === undefined)
    throw new UsageError('--instruction is required (e.g. --instruction "make the sky purple").');
  // "" and "   " are one mistake: one message, one exit code.
  if (instruction.trim() === "")
    throw new UsageError(
      '--instruction is empty; say what to change (e.g. --instruction "make the sky purple").',
    );
  const out = requireFlag(ctx, "out", "where the edited PNG goes");
  checkOutFile(out);
  const options = adapterOptions(ctx);
  checkAdapterFlags(adapter, options, "edit");
  if (imagePaths.length > adapter.capabilities.maxSourceImages)
    throw new UsageError(
      `--image was given ${imagePaths.length} times; adapter "${adapter.name}" takes at most ` +
        `${adapter.capabilities.maxSourceImages} source image(s).`,
    );
  const sources: RgbImage[] = [];
  for (const imagePath of imagePaths) {
    try {
      sources.push(await decodeImage(imagePath));
    } catch (err) {
      throw new Error(
        `--image ${imagePath}: cannot decode it (${(err as Error).message}); pass a PNG, JPEG or WebP file.`,
      );
    }
  }
  const request: EditRequest = {
    key: "edit",
    instruction,
    source: sources[0]!,
    ...(sources.length > 1 ? { sources } : {}),
    requirement: stringFlag(ctx, "requirement"),
  };
  const editor = await adapter.loadEditor(options);
  try {
    const [edited] = await editor.edit([request]);
    await writeFileAtomic(out, await encodePng(edited!));
  } finally {
    await editor.close?.();
  }
  ctx.out(out);
  return 0;
}
