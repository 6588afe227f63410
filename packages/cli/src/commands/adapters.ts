import type { CommandContext } from "../context.js";
import { adapterNames, loadAdapter } from "../registry.js";

/** `edit-r1 adapters`: each adapter's name, description, default weights and what it can do. */
export async function adapters(ctx: CommandContext): Promise<number> {
  for (const name of adapterNames()) {
    const { cli, capabilities: c } = await loadAdapter(name);
    ctx.out(`${name}: ${cli.description}`);
    ctx.out(`  weights: ${cli.defaultRepo ?? "shipped with the package"}`);
    const sizes =
      c.resolutions === "any"
        ? "any"
        : c.resolutions
            .map(([w, h]) => `${w}x${h}`)
            .slice(0, 4)
            .join(", ");
    ctx.out(
      `  source images ≤ ${c.maxSourceImages} · devices ${c.devices.join("/")} · dtypes ${c.dtypes.join("/")} · guidance ${c.guidance} · ` +
        `sizes ${sizes}${c.resolutions !== "any" && c.resolutions.length > 4 ? ", …" : ""} · ${c.trainable ? "trainable" : "edit only"}`,
    );
    // What the model takes, when it is narrower than "any image, any words" (the tiny model's size and words).
    if (cli.inputs) ctx.out(cli.inputs.replace(/^/gm, "  "));
  }
  return 0;
}
