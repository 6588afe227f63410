import { describe, expect, it } from "vitest";
import { matchesPatterns } from "./match-patterns.js";

describe("matchesPatterns (fnmatch rules, as huggingface_hub's allow_patterns)", () => {
  it("lets * cross folders, as Python's fnmatch does", () => {
    expect(matchesPatterns("transformer/config.json", ["*.json"])).toBe(true);
    expect(matchesPatterns("transformer/a.safetensors", ["transformer/*"])).toBe(true);
    expect(matchesPatterns("transformer/a.safetensors", ["vae/*"])).toBe(false);
    expect(matchesPatterns("model_index.json", ["*.safetensors", "model_index.json"])).toBe(true);
  });
  it("treats a trailing slash as the whole folder", () => {
    expect(matchesPatterns("vae/diffusion_pytorch_model.safetensors", ["vae/"])).toBe(true);
    expect(matchesPatterns("vaex/config.json", ["vae/"])).toBe(false);
  });
  it("supports ? and character sets, and escapes regular-expression characters", () => {
    expect(matchesPatterns("model-00001-of-00002.safetensors", ["model-0000?-of-00002.safetensors"])).toBe(
      true,
    );
    expect(matchesPatterns("shard-3.bin", ["shard-[0-2].bin"])).toBe(false);
    expect(matchesPatterns("shard-3.bin", ["shard-[!0-2].bin"])).toBe(true);
    expect(matchesPatterns("aXjson", ["a.json"])).toBe(false);
    expect(matchesPatterns("a+b(1).txt", ["a+b(1).txt"])).toBe(true);
    expect(matchesPatterns("[x", ["[x"])).toBe(true);
  });
});
