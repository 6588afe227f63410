import { checkAdapter, decodeImage, encodePng } from "@edit-r1/core";
import { writeFileAtomic } from "@edit-r1/engine";
import { type CommandContext, requireFlag, stringFlag } from "../context.js";
import { loadAdapter } from "../registry.js";
import { adapterOptions } from "./bench.js";

/** `edit-r1 edit`: one instruction on one image. */
export async function edit(ctx: CommandContext): Promise<number> {
  const adapter = await loadAdapter(requireFlag(ctx, "adapter", "e.g. --adapter flux-kontext"));
  const imagePath = requireFlag(ctx, "image", "the source image, any format sharp reads");
  const instruction = requireFlag(ctx, "instruction", 'e.g. --instruction "make the sky purple"');
  const out = requireFlag(ctx, "out", "where the edited PNG goes");
  const options = adapterOptions(ctx);
  checkAdapter(adapter, options, "edit");
  let source: Awaited<ReturnType<typeof decodeImage>>;
  try {
    source = await decodeImage(imagePath);
  } catch (err) {
    throw new Error(
      `--image ${imagePath}: cannot decode it (${(err as Error).message}); pass a PNG, JPEG or WebP file.`,
    );
  }
  const editor = await adapter.loadEditor(options);
  try {
    const [edited] = await editor.edit([
      { key: "edit", instruction, source, requirement: stringFlag(ctx, "requirement") },
    ]);
    await writeFileAtomic(out, await encodePng(edited!));
  } finally {
    await editor.close?.();
  }
  ctx.out(out);
  return 0;
}
