import { closeDefaultRuntime, compile, evaluate, Graph, GraphError } from "@edit-r1/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildAutoencoderKLQwenImageDecoder,
  buildAutoencoderKLQwenImageEncoder,
} from "./autoencoder-kl-qwen-image.js";
import { parseAutoencoderKLQwenImageConfig } from "./autoencoder-kl-qwen-image-config.js";
import { ModelConfigError } from "./model-config-error.js";
import { openSafetensorsWeights } from "./safetensors-weights.js";
import { fixturesOfKind, readAllFloat32, readFixtureIo, relativeL2 } from "./test-fixtures.js";
import { memoryWeightSource, WeightError } from "./weight-source.js";

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

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

  it("encodes to the posterior mean and decodes, through onnxruntime and the interpreter (relative L2 < 1e-4)", async () => {
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
      const errors = {
        encode: relativeL2(out.mean as Float32Array, t("out.latent_mean").data),
        decode: relativeL2(out.decoded as Float32Array, t("out.decoded").data),
      };
      console.log(`${fixture.name}: onnxruntime fp32 relative L2`, errors);
      expect(errors.encode).toBeLessThan(1e-4);
      expect(errors.decode).toBeLessThan(1e-4);
    } finally {
      await session.dispose();
    }
    const [m64, d64] = evaluate(g, feeds, [mean, decoded]);
    expect(relativeL2(m64!, t("out.latent_mean").data)).toBeLessThan(1e-4);
    expect(relativeL2(d64!, t("out.decoded").data)).toBeLessThan(1e-4);
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
    expect(relativeL2(out!, t("out.latent_mean").data)).toBeLessThan(1e-4);
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
    const bad = parseAutoencoderKLQwenImageConfig({ ...fixture.meta.config, base_dim: 4 });
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
      /"encoder\.conv_in\.weight" has shape \[8, 3, 3, 3, 3\] but the model config needs \[4, 3, 3, 3, 3\]/,
    );
    const g3 = new Graph();
    expect(() =>
      buildAutoencoderKLQwenImageDecoder(
        g3,
        config,
        inMemory((_n, d) => d),
        g3.input("z", "float32", [1, config.zDim, 2, 8, 8]),
      ),
    ).toThrow(/expected \[B, \d+, 1, H, W\]/);
  });
});
