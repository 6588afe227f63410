import { describe, expect, it } from "vitest";
import { type Adapter, checkAdapter } from "./adapter.js";
import { INTERFACE_VERSION } from "./types.js";

const base: Adapter = {
  name: "demo",
  interfaceVersion: INTERFACE_VERSION,
  capabilities: {
    guidance: "none",
    resolutions: [[16, 16]],
    maxSourceImages: 1,
    loraTargets: ["to_q", "to_k"],
    dtypes: ["float32"],
    devices: ["cpu"],
    trainable: false,
  },
  cli: { description: "a demo" },
  loadEditor: async () => ({ name: "x", protocol: {}, edit: async () => [] }),
};
const trainable: Adapter = {
  ...base,
  capabilities: { ...base.capabilities, trainable: true },
  loadPolicy: async () => {
    throw new Error("not used");
  },
};

describe("checkAdapter", () => {
  it("accepts what the adapter declares", () => {
    expect(() => checkAdapter(base, { device: "cpu", dtype: "float32", resolution: [16, 16] })).not.toThrow();
    expect(() =>
      checkAdapter(trainable, { loraConfig: { rank: 4, alpha: 8, targets: ["to_q"] } }, "train"),
    ).not.toThrow();
  });
  it("rejects undeclared devices, training without a policy and version skew, naming the adapter", () => {
    expect(() => checkAdapter(base, { device: "cuda" })).toThrow(/"demo" does not run on device "cuda"/);
    expect(() => checkAdapter(base, {}, "train")).toThrow(/"demo" cannot be trained/);
    expect(() => checkAdapter({ ...base, interfaceVersion: 99 })).toThrow(/interface version 99/);
    expect(() => checkAdapter(base, { lora: "x", loraScale: -1 })).toThrow(/lora-scale/);
  });
  it("checks every declared capability: dtype, guidance, resolution, LoRA targets", () => {
    expect(() => checkAdapter(base, { dtype: "bfloat16" })).toThrow(/"demo" does not compute in bfloat16/);
    expect(() => checkAdapter(base, { guidance: 3.5 })).toThrow(/"demo" has no guidance/);
    expect(() => checkAdapter(base, { resolution: [32, 16] })).toThrow(
      /"demo" does not generate 32×16.*16×16/,
    );
    expect(() => checkAdapter(trainable, { loraConfig: { targets: ["to_q", "ff.net"] } }, "train")).toThrow(
      /cannot put LoRA on "ff.net"; its LoRA targets are to_q, to_k/,
    );
  });
  it("rejects options the purpose cannot honour, naming the option", () => {
    expect(() => checkAdapter(base, { loraScale: 2 })).toThrow(/--lora-scale 2 was given without --lora/);
    expect(() => checkAdapter(base, { loraAlpha: 16 })).toThrow(/--lora-alpha 16 was given without --lora/);
    expect(() => checkAdapter(base, { lora: "x", loraAlpha: 0 })).toThrow(/--lora-alpha must be a positive/);
    expect(() => checkAdapter(base, { lora: "x", loraAlpha: 16 })).not.toThrow();
    expect(() => checkAdapter(trainable, { lora: "x", loraScale: 2 }, "train")).toThrow(
      /cannot be used for training/,
    );
    expect(() => checkAdapter(trainable, { loraConfig: { rank: 4 } }, "edit")).toThrow(/training option/);
    expect(() => checkAdapter(trainable, { recompute: true }, "train")).toThrow(
      /"demo" cannot checkpoint its training graph per block/,
    );
    const checkpointing = { ...trainable, capabilities: { ...trainable.capabilities, recompute: true } };
    expect(() => checkAdapter(checkpointing, { recompute: true }, "train")).not.toThrow();
    expect(() => checkAdapter(checkpointing, { recompute: true }, "edit")).toThrow(
      /--recompute\) is a training/,
    );
    expect(() => checkAdapter(trainable, { attentionHeadChunk: 4 }, "train")).toThrow(
      /"demo" cannot chunk its attention by heads; drop --attention-chunk/,
    );
    const chunking = { ...trainable, capabilities: { ...trainable.capabilities, attentionHeadChunk: true } };
    expect(() => checkAdapter(chunking, { attentionHeadChunk: 4 }, "train")).not.toThrow();
    expect(() => checkAdapter(chunking, { attentionHeadChunk: 0 }, "train")).toThrow(/whole number of heads/);
    // Editors chunk too (edit, bench), as the policy does.
    expect(() => checkAdapter(chunking, { attentionHeadChunk: 4 }, "edit")).not.toThrow();
    expect(() => checkAdapter(trainable, { attentionHeadChunk: 4 }, "edit")).toThrow(
      /cannot chunk its attention/,
    );
    expect(() => checkAdapter(trainable, { lora: "x", loraConfig: { rank: 4 } }, "train")).toThrow(
      /either a LoRA to start from/,
    );
    expect(() => checkAdapter(base, { noiseSeed: 1.5 })).toThrow(/noiseSeed must be a non-negative integer/);
    expect(() => checkAdapter(base, { steps: 0 })).toThrow(/steps must be a positive integer/);
  });
  it("accepts an optional cli.writeReplica function and rejects anything else under that name", () => {
    const withReplica: Adapter = { ...base, cli: { ...base.cli, writeReplica: async () => {} } };
    expect(() => checkAdapter(withReplica)).not.toThrow();
    const bad = { ...base, cli: { ...base.cli, writeReplica: "yes" } } as unknown as Adapter;
    expect(() => checkAdapter(bad)).toThrow(/"demo": cli\.writeReplica must be a function.*got string/);
  });
  it("takes --base only from adapters that declare bases, and only a declared one", () => {
    expect(() => checkAdapter(base, { base: "x" })).toThrow(
      /"demo" has one base model; --base is for adapters/,
    );
    const layered: Adapter = { ...base, capabilities: { ...base.capabilities, bases: ["a", "b"] } };
    expect(() => checkAdapter(layered, { base: "b" })).not.toThrow();
    expect(() => checkAdapter(layered, { base: "c" })).toThrow(/has no base "c"; choose one of a, b/);
  });
  it("takes --lora-scale without --lora only from adapters with a LoRA of their own", () => {
    expect(() => checkAdapter(base, { loraScale: 2 })).toThrow(/without --lora/);
    const own: Adapter = { ...base, capabilities: { ...base.capabilities, builtInLora: true } };
    expect(() => checkAdapter(own, { loraScale: 2 })).not.toThrow();
  });
});
