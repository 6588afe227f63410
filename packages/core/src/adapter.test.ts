import { describe, expect, it } from "vitest";
import { type Adapter, checkAdapter } from "./adapter.js";
import { INTERFACE_VERSION } from "./types.js";

const base: Adapter = {
  name: "demo",
  interfaceVersion: INTERFACE_VERSION,
  capabilities: {
    guidance: "none",
    resolutions: "any",
    loraTargets: ["to_q"],
    weightDtypes: ["float32"],
    devices: ["cpu"],
    trainable: false,
  },
  loadEditor: async () => ({ name: "x", protocol: {}, edit: async () => [] }),
};

describe("checkAdapter", () => {
  it("accepts what the adapter declares", () => {
    expect(() => checkAdapter(base, { device: "cpu" })).not.toThrow();
  });
  it("rejects undeclared devices, training without a policy and version skew, naming the adapter", () => {
    expect(() => checkAdapter(base, { device: "cuda" })).toThrow(/"demo" does not run on device "cuda"/);
    expect(() => checkAdapter(base, {}, "train")).toThrow(/"demo" cannot be trained/);
    expect(() => checkAdapter({ ...base, interfaceVersion: 99 })).toThrow(/interface version 99/);
    expect(() => checkAdapter(base, { loraScale: -1 })).toThrow(/lora-scale/);
  });
});
