import { closeDefaultRuntime, compile, Graph } from "@edit-r1/engine";
import { fixturesOfKind, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAutoencoderKLDecoder, buildAutoencoderKLEncoder } from "./autoencoder-kl.js";
import { type AutoencoderKLConfig, parseAutoencoderKLConfig } from "./autoencoder-kl-config.js";
import { ModelConfigError } from "./model-config-error.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import type { WeightSource } from "./weight-source.js";

type Tensors = Awaited<ReturnType<typeof readFixtureIo>>;

/**
 * Relative L2 to the fp32 diffusers reference that fp32 rounding explains (unit roundoff 2^-24 ≈ 6e-8 per
 * operation, in the reference and in onnxruntime). Measured on flux-vae: encode 5.7e-7, decode 7.3e-7; on
 * held-out fixtures (batch 2, 24×40 and 16×40 images, a FLUX-like config without quant convs): at most
 * 6.9e-7 and 7.2e-7.
 * One GroupNorm group instead of the config's costs > 1e-1.
 */
const FP32_PARITY = 3e-6;

const fixtures = fixturesOfKind("autoencoder-kl");

afterAll(async () => {
  await closeDefaultRuntime();
});

it("finds at least one autoencoder-kl fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

describe.each(fixtures.map((f) => [f.name, f] as const))("AutoencoderKL vs fixture %s", (_, fixture) => {
  const config = parseAutoencoderKLConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
  let io: Tensors;
  let weights: WeightSource;
  beforeAll(async () => {
    io = await readFixtureIo(fixture);
    weights = await openSafetensorsWeights(fixture.weightsPath);
  });

  /** Runs encoder or decoder through onnxruntime (CPU, fp32). */
  const runOrt = async (which: "encode" | "decode", cfg: AutoencoderKLConfig = config) => {
    const g = new Graph(`vae-${which}`);
    const name = which === "encode" ? "in.image" : "in.latent";
    const input = g.input("x", "float32", io.get(name)!.shape);
    const y =
      which === "encode"
        ? buildAutoencoderKLEncoder(g, cfg, weights, input)
        : buildAutoencoderKLDecoder(g, cfg, weights, input);
    const session = await compile(g, { outputs: { y } });
    try {
      const out = await session.run({ x: io.get(name)!.data });
      return out.y as Float32Array;
    } finally {
      await session.dispose();
    }
  };

  it(`encodes to the posterior mean (onnxruntime fp32, relative L2 < ${FP32_PARITY})`, async () => {
    const err = relativeL2(await runOrt("encode"), io.get("out.latent_mean")!.data);
    console.log(`${fixture.name}: encode relative L2 = ${err.toExponential(2)} (bound ${FP32_PARITY})`);
    expect(err).toBeLessThan(FP32_PARITY);
  });

  it(`decodes latents (onnxruntime fp32, relative L2 < ${FP32_PARITY})`, async () => {
    const err = relativeL2(await runOrt("decode"), io.get("out.decoded")!.data);
    console.log(`${fixture.name}: decode relative L2 = ${err.toExponential(2)} (bound ${FP32_PARITY})`);
    expect(err).toBeLessThan(FP32_PARITY);
  });

  it("has teeth: the wrong GroupNorm group count is far off", async () => {
    // One group (a LayerNorm over all channels), or two when the config already has one.
    const wrongGroups = config.normNumGroups === 1 ? 2 : 1;
    const err = relativeL2(
      await runOrt("decode", { ...config, normNumGroups: wrongGroups }),
      io.get("out.decoded")!.data,
    );
    console.log(
      `${fixture.name}: ${wrongGroups} GroupNorm group(s) instead of ${config.normNumGroups}: ${err}`,
    );
    expect(err).toBeGreaterThan(1e-2);
  });
});

describe("parseAutoencoderKLConfig", () => {
  it("fills diffusers defaults and reads the FLUX VAE normalisation", () => {
    const flux = parseAutoencoderKLConfig({
      block_out_channels: [128, 256, 512, 512],
      down_block_types: Array(4).fill("DownEncoderBlock2D"),
      up_block_types: Array(4).fill("UpDecoderBlock2D"),
      latent_channels: 16,
      use_quant_conv: false,
      use_post_quant_conv: false,
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
    });
    expect(flux).toMatchObject({
      layersPerBlock: 1,
      normNumGroups: 32,
      useQuantConv: false,
      shiftFactor: 0.1159,
    });
    expect(parseAutoencoderKLConfig({}).shiftFactor).toBe(0);
  });
  it("names the file and key on a config it cannot build", () => {
    expect(() =>
      parseAutoencoderKLConfig({ block_out_channels: [8, 12], norm_num_groups: 8 }, "vae/config.json"),
    ).toThrow(ModelConfigError);
    expect(() => parseAutoencoderKLConfig({ act_fn: "gelu" }, "vae/config.json")).toThrow(
      /vae\/config.json: "act_fn"/,
    );
    expect(() => parseAutoencoderKLConfig({ block_out_channels: [32, 64] })).toThrow(/"down_block_types"/);
  });
});
