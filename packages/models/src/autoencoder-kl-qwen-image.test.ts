import { closeDefaultRuntime, compile, evaluate, Graph, GraphError } from "@edit-r1/engine";
import { fixturesOfKind, readAllFloat32, readFixtureIo, relativeL2 } from "@edit-r1/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildAutoencoderKLQwenImageDecoder,
  buildAutoencoderKLQwenImageEncoder,
} from "./autoencoder-kl-qwen-image.js";
import { parseAutoencoderKLQwenImageConfig } from "./autoencoder-kl-qwen-image-config.js";
import { ModelConfigError } from "./model-config-error.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { memoryWeightSource, WeightError } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * Relative L2 to the fp32 diffusers reference that fp32 rounding explains (unit roundoff 2^-24 ≈ 6e-8 per
 * operation). Measured on qwenimage-vae: onnxruntime encode 7.0e-7 and decode 6.6e-7, float64 interpreter
 * 4.6e-7 and 4.7e-7; on held-out fixtures (batch 2, 24×40 and 16×32 images, z_dim 6 with ×8 downsampling):
 * at most 5.5e-7 / 6.9e-7 and 4.8e-7 / 6.0e-7. A wrong temporal tap or RMS-norm scale costs > 1e-1.
 */
const FP32_PARITY = 3e-6;

const fixtures = fixturesOfKind("autoencoder-kl-qwenimage");

afterAll(async () => {
  await closeDefaultRuntime();
});

it("finds at least one autoencoder-kl-qwenimage fixture", () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

it("parses the released config's defaults, latents_mean/std included", () => {
  const c = parseAutoencoderKLQwenImageConfig({});
  expect(c).toMatchObject({ baseDim: 96, zDim: 16, dimMult: [1, 2, 4, 4], numResBlocks: 2 });
  expect(c.latentsMean[7]).toBe(1.5508);
  expect(c.latentsStd[15]).toBe(1.916);
  expect(() => parseAutoencoderKLQwenImageConfig({ z_dim: 4 }, "vae/config.json")).toThrow(
    /vae\/config\.json: "latents_mean" must be a list of 4/,
  );
  expect(() => parseAutoencoderKLQwenImageConfig({ attn_scales: [0.5] })).toThrow(ModelConfigError);
});

describe.each(fixtures.map((f) => [f.name, f] as const))("Qwen-Image VAE vs fixture %s", (_, fixture) => {
  const config = parseAutoencoderKLQwenImageConfig(fixture.meta.config, `${fixture.dir}/meta.json`);
  let io: Tensors;
  let fp32: Tensors;
  beforeAll(async () => {
    io = await readFixtureIo(fixture);
    fp32 = await readAllFloat32(fixture.weightsPath);
  });
  const t = (name: string) => io.get(name)!;
  const inMemory = (edit: (name: string, d: Float32Array) => Float32Array) =>
    memoryWeightSource(
      new Map([...fp32].map(([n, w]) => [n, { dtype: "float32", shape: w.shape, data: edit(n, w.data) }])),
    );
  /** Relative L2 of `out` to the reference output `name`, printed, and below FP32_PARITY. */
  const expectParity = (what: string, out: ArrayLike<number>, name: string) => {
    const err = relativeL2(out, t(name).data);
    console.log(`${fixture.name}: ${what} relative L2 = ${err.toExponential(2)} (bound ${FP32_PARITY})`);
    expect(err, what).toBeLessThan(FP32_PARITY);
  };

  it(`encodes to the posterior mean and decodes, through onnxruntime and the interpreter (relative L2 < ${FP32_PARITY})`, async () => {
    const weights = await openSafetensorsWeights(fixture.weightsPath);
    const g = new Graph("qwen-vae");
    const image = g.input("image", "float32", t("in.image").shape);
    const latent = g.input("latent", "float32", t("in.latent").shape);
    const mean = buildAutoencoderKLQwenImageEncoder(g, config, weights, image);
    const decoded = buildAutoencoderKLQwenImageDecoder(g, config, weights, latent);
    expect(mean.shape).toEqual(t("out.latent_mean").shape);
    expect(decoded.shape).toEqual(t("out.decoded").shape);
    const feeds = { image: t("in.image").data, latent: t("in.latent").data };
    const session = await compile(g, { outputs: { mean, decoded } });
    try {
      const out = await session.run(feeds);
      expectParity("onnxruntime fp32 encode", out.mean as Float32Array, "out.latent_mean");
      expectParity("onnxruntime fp32 decode", out.decoded as Float32Array, "out.decoded");
    } finally {
      await session.dispose();
    }
    const [m64, d64] = evaluate(g, feeds, [mean, decoded]);
    expectParity("interpreter encode", m64!, "out.latent_mean");
    expectParity("interpreter decode", d64!, "out.decoded");
  });

  it("takes 4-D frames too, with the same values", () => {
    const g = new Graph();
    const [b, c, , h, w] = t("in.image").shape as number[];
    const image = g.input("image", "float32", [b!, c!, h!, w!]);
    const mean = buildAutoencoderKLQwenImageEncoder(
      g,
      config,
      inMemory((_n, d) => d),
      image,
    );
    expect(mean.rank).toBe(4);
    const [out] = evaluate(g, { image: t("in.image").data }, [mean]);
    expectParity("interpreter encode of 4-D frames", out!, "out.latent_mean");
  });

  it("has teeth: another temporal tap or a missing √C in the RMS norm fail", () => {
    const run = (edit: (name: string, d: Float32Array) => Float32Array) => {
      const g = new Graph();
      const image = g.input("image", "float32", t("in.image").shape);
      const mean = buildAutoencoderKLQwenImageEncoder(g, config, inMemory(edit), image);
      return relativeL2(evaluate(g, { image: t("in.image").data }, [mean])[0]!, t("out.latent_mean").data);
    };
    // Moving the first temporal tap into the last slot is what "use W[:, :, 0]" would compute.
    const firstTap = (name: string, d: Float32Array) => {
      const shape = fp32.get(name)!.shape;
      if (shape.length !== 5 || shape[2] !== 3) return d;
      const out = Float32Array.from(d);
      const plane = shape[3]! * shape[4]!;
      for (let base = 0; base < d.length; base += 3 * plane)
        out.set(d.subarray(base, base + plane), base + 2 * plane);
      return out;
    };
    const noSqrtC = (name: string, d: Float32Array) =>
      name.endsWith(".gamma") ? d.map((v) => v / Math.sqrt(fp32.get(name)!.shape[0]!)) : d;
    const errors = { firstTap: run(firstTap), noSqrtC: run(noSqrtC) };
    console.log(`${fixture.name}: relative L2 of deliberate mistakes`, errors);
    for (const e of Object.values(errors)) expect(e).toBeGreaterThan(1e-2);
  });

  it("names the key and both shapes on a checkpoint that does not fit, and rejects multi-frame inputs", () => {
    // Twice the base width: a conv_in no checkpoint of this config has, whatever the config.
    const wrongDim = 2 * config.baseDim;
    const bad = parseAutoencoderKLQwenImageConfig({ ...fixture.meta.config, base_dim: wrongDim });
    const g = new Graph();
    const image = g.input("image", "float32", t("in.image").shape);
    expect(() =>
      buildAutoencoderKLQwenImageEncoder(
        g,
        bad,
        inMemory((_n, d) => d),
        image,
      ),
    ).toThrow(WeightError);
    expect(() =>
      buildAutoencoderKLQwenImageEncoder(
        new Graph(),
        bad,
        inMemory((_n, d) => d),
        new Graph().input("x", "float32", [1]),
      ),
    ).toThrow(GraphError);
    const g2 = new Graph();
    expect(() =>
      buildAutoencoderKLQwenImageEncoder(
        g2,
        bad,
        inMemory((_n, d) => d),
        g2.input("image", "float32", t("in.image").shape),
      ),
    ).toThrow(
      new RegExp(
        `"encoder\\.conv_in\\.weight" has shape \\[${config.baseDim}, (\\d+), 3, 3, 3\\] ` +
          `but the model config needs \\[${wrongDim}, \\1, 3, 3, 3\\]`,
      ),
    );
    // The fixture's own latent with a second frame: only the frame count is wrong.
    const [b, c, , h, w] = t("in.latent").shape as [number, number, number, number, number];
    const g3 = new Graph();
    expect(() =>
      buildAutoencoderKLQwenImageDecoder(
        g3,
        config,
        inMemory((_n, d) => d),
        g3.input("z", "float32", [b, c, 2, h, w]),
      ),
    ).toThrow(new RegExp(`has shape \\[${b},${c},2,${h},${w}\\], expected \\[B, ${config.zDim}, 1, H, W\\]`));
  });
});
