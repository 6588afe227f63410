import { describe, expect, it } from "vitest";
import { parseFluxTransformerConfig } from "./flux-config.js";

describe("parseFluxTransformerConfig", () => {
  it("fills diffusers defaults (the FLUX.1-dev shape)", () => {
    const c = parseFluxTransformerConfig({ guidance_embeds: true });
    expect(c.numLayers).toBe(19);
    expect(c.numSingleLayers).toBe(38);
    expect(c.outChannels).toBe(64);
    expect(c.attentionHeadDim * c.numAttentionHeads).toBe(3072);
  });
  it("names the file and key on bad input", () => {
    expect(() => parseFluxTransformerConfig({ num_layers: -1 }, "t/config.json")).toThrow(
      /t\/config.json: "num_layers"/,
    );
    expect(() => parseFluxTransformerConfig({ axes_dims_rope: [8, 8, 8] })).toThrow(
      /sum to attention_head_dim/,
    );
  });
});
