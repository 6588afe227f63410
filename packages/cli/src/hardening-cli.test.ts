import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { decodeImage, encodePng } from "@edit-r1/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./main.js";

const root = resolve(import.meta.dirname, "../../..");
const tmp = mkdtempSync(join(tmpdir(), "cli-hardening-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** One optimizer step of the tiny model on a handful of rollouts: a run folder with a checkpoint, in seconds. */
const small = join(tmp, "small.json");
const trainArgs = (out: string) => ["train", "--steps", "1", "--no-bench", "--config", small, "--out", out];

/** A 16×16 shapes-world source the repository ships. */
const source = join(root, "adapters/tiny/examples/red-circle-and-green-triangle.png");
beforeAll(() => {
  writeFileSync(
    small,
    JSON.stringify({ groupSize: 2, promptsPerBatch: 1, rolloutBatches: 1, trainBatchSize: 2 }),
  );
});

describe("output-folder faults are reported in words, before anything is written (exit 2)", () => {
  it("--out names a file", async () => {
    const file = join(tmp, "a-file");
    writeFileSync(file, "");
    const r = await run(trainArgs(file));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--out .*a-file is a file; choose a folder/);
    expect(r.err).not.toMatch(/ENOTDIR|EEXIST/);
    const under = await run(trainArgs(join(file, "run")));
    expect(under.code).toBe(2);
    expect(under.err).toMatch(/--out .*run cannot be created: .*a-file is a file, not a folder/);
    const bench = await run(["bench", "--adapter", "tiny", "--benchmark", "shapes", "--out", file]);
    expect(bench.code).toBe(2);
    expect(bench.err).toMatch(/--out .*a-file is a file; choose a folder/);
  });

  it("metrics.jsonl is a folder", async () => {
    const out = join(tmp, "metrics-folder");
    mkdirSync(join(out, "metrics.jsonl"), { recursive: true });
    const r = await run(trainArgs(out));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/metrics\.jsonl is a folder, but the run writes a file there; move it aside/);
    expect(r.err).not.toMatch(/EISDIR/);
    expect(readdirSync(out)).toEqual(["metrics.jsonl"]);
  });

  it("edit's --out in a folder that does not exist, or naming a folder", async () => {
    const args = ["edit", "--adapter", "tiny", "--image", source, "--instruction", "remove the red circle"];
    const missing = await run([...args, "--out", join(tmp, "nowhere", "x.png")]);
    expect([missing.code, missing.err]).toEqual([
      2,
      expect.stringMatching(/nowhere does not exist; create it/),
    ]);
    const folder = await run([...args, "--out", tmp]);
    expect([folder.code, folder.err]).toEqual([
      2,
      expect.stringMatching(/is a folder; name the file to write/),
    ]);
  });
});

describe("usage errors exit 2 naming the flag, checked before anything is written", () => {
  it("--steps -1 is a bad --steps value, not Node's 'argument is ambiguous'", async () => {
    const r = await run(["train", "--steps", "-1", "--out", join(tmp, "never")]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--steps must be an integer ≥ 1, got "-1"/);
    expect(r.err).not.toMatch(/ambiguous/);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });

  it("--recompute trains with checkpointing per block: the same step metrics as without", async () => {
    // The group filter off, so the step trains (a group of 2 is often filtered).
    const config = join(tmp, "unfiltered.json");
    writeFileSync(
      config,
      JSON.stringify({
        groupSize: 2,
        promptsPerBatch: 1,
        rolloutBatches: 1,
        trainBatchSize: 2,
        filter: { enabled: false },
      }),
    );
    const runs = [join(tmp, "plain"), join(tmp, "recompute")];
    const args = (out: string) => [
      "train",
      "--steps",
      "1",
      "--no-bench",
      "--config",
      config,
      "--out",
      out,
      "--seed",
      "4",
    ];
    expect((await run(args(runs[0]!))).code).toBe(0);
    expect((await run([...args(runs[1]!), "--recompute"])).code).toBe(0);
    const [plain, ckpt] = runs.map(
      (dir) =>
        JSON.parse(readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n")[0]!) as {
          loss: number;
          gradNorm: number;
        },
    );
    expect(plain!.gradNorm).toBeGreaterThan(0);
    // The recomputed forward runs the same ops on the same values; float32 round-off at most.
    expect(Math.abs(ckpt!.loss - plain!.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(plain!.loss));
    expect(Math.abs(ckpt!.gradNorm - plain!.gradNorm)).toBeLessThanOrEqual(1e-5 * plain!.gradNorm);
    const help = await run(["train", "--help"]);
    expect(help.out).toMatch(/--recompute +gradient checkpointing per transformer block/);
  });

  it("a bad reward spec, before the run folder or its data are written", async () => {
    for (const [spec, says] of [
      ["bogus:x", /--reward bogus:x: reward kind "bogus" is unknown; known kinds: .*shapes/],
      ["0.5*", /--reward 0\.5\*: reward spec part "0\.5\*" is malformed/],
      ["shapes,", /--reward shapes,: .*empty part/],
    ] as const) {
      const out = join(tmp, `bad-reward-${basename(spec).replace(/\W/g, "")}`);
      const r = await run([...trainArgs(out), "--reward", spec]);
      expect(r.code, spec).toBe(2);
      expect(r.err, spec).toMatch(says);
      expect(existsSync(out), spec).toBe(false);
    }
  });

  it("a folder that holds checkpoints, without --resume, says --resume", async () => {
    const out = join(tmp, "run");
    const first = await run(trainArgs(out));
    expect(first.code, first.err).toBe(0);
    const again = await run(trainArgs(out));
    expect(again.code).toBe(2);
    expect(again.err).toMatch(
      /--out .*run already holds checkpoints \(newest: step 1\); add --resume to continue that run, or choose another --out/,
    );
    const metrics = readFileSync(join(out, "metrics.jsonl"), "utf8");
    const resumed = await run([...trainArgs(out).map((a) => (a === "1" ? "2" : a)), "--resume"]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8").startsWith(metrics)).toBe(true);
  });

  it('--instruction "" and "   " get one message and one code', async () => {
    const results = [];
    for (const instruction of ["", "   "]) {
      const args = ["edit", "--adapter", "tiny", "--image", source, "--instruction", instruction];
      results.push(await run([...args, "--out", join(tmp, "x.png")]));
    }
    expect(results[0]!.code).toBe(2);
    expect(results[0]!.err).toMatch(/--instruction is empty; say what to change/);
    expect(results[1]).toEqual(results[0]);
  });

  it("option values the adapter cannot take are usage errors (core's checkAdapter)", async () => {
    const args = ["edit", "--adapter", "tiny", "--image", source, "--instruction", "remove the red circle"];
    const dtype = await run([...args, "--dtype", "float16", "--out", join(tmp, "x.png")]);
    expect([dtype.code, dtype.err]).toEqual([2, expect.stringMatching(/does not compute in float16/)]);
    const size = await run([...args, "--resolution", "32x32", "--out", join(tmp, "x.png")]);
    expect([size.code, size.err]).toEqual([2, expect.stringMatching(/does not generate 32×32/)]);
    const alpha = await run([...args, "--lora-alpha", "16", "--out", join(tmp, "x.png")]);
    expect([alpha.code, alpha.err]).toEqual([
      2,
      expect.stringMatching(/--lora-alpha 16 was given without --lora/),
    ]);
  });
});

describe("LoRA folders through the CLI", () => {
  it("a PEFT folder without adapter_config.json is refused, saying how to fix it; --lora-alpha applies it", async () => {
    const out = join(tmp, "lora-run");
    expect((await run(trainArgs(out))).code).toBe(0);
    const lora = join(out, "lora");
    const config = JSON.parse(readFileSync(join(lora, "adapter_config.json"), "utf8"));
    rmSync(join(lora, "adapter_config.json"));
    const args = ["edit", "--adapter", "tiny", "--image", source, "--instruction", "remove the red circle"];
    const refused = await run([...args, "--lora", lora, "--out", join(tmp, "l.png")]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(
      /adapter_model\.safetensors is PEFT's weights file, but .*adapter_config\.json is missing.*Copy the adapter_config\.json saved with the weights into .*--lora-alpha N/,
    );
    const told = await run([
      ...args,
      "--lora",
      lora,
      "--lora-alpha",
      String(config.lora_alpha),
      "--out",
      join(tmp, "l.png"),
    ]);
    expect(told.code, told.err).toBe(0);
  });
});

describe("the tiny adapter for a newcomer", () => {
  it("runs the README's `edit --adapter tiny` command as written (paths from the repository root)", async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const line = /^pnpm edit-r1 (edit --adapter tiny .*)$/m.exec(readme)?.[1];
    expect(line, "the root README shows an `edit --adapter tiny` command").toBeDefined();
    const args = [...line!.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
    const at = (flag: string) => args.indexOf(flag) + 1;
    const image = join(root, args[at("--image")]!);
    expect(existsSync(image), `${image} ships with the repository`).toBe(true);
    const out = join(tmp, "readme-out.png");
    args[at("--image")] = image;
    args[at("--out")] = out;
    const r = await run(args);
    expect(r.code, r.err).toBe(0);
    expect((await decodeImage(out)).width).toBe(16);
  });

  it("edits a source of another size by resizing it (nearest neighbour), the same as its 16×16 original", async () => {
    const small16 = await decodeImage(source);
    // 4× nearest upscale: each pixel a 4×4 block, which nearest downscaling maps back exactly.
    const big = new Uint8Array(64 * 64 * 3);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++)
        big.set(
          small16.data.subarray(((y >> 2) * 16 + (x >> 2)) * 3, ((y >> 2) * 16 + (x >> 2)) * 3 + 3),
          (y * 64 + x) * 3,
        );
    const bigPath = join(tmp, "big.png");
    writeFileSync(bigPath, await encodePng({ width: 64, height: 64, data: big }));
    const edit = (image: string, out: string) =>
      run([
        "edit",
        "--adapter",
        "tiny",
        "--image",
        image,
        "--instruction",
        "remove the red circle",
        "--out",
        out,
      ]);
    const fromBig = await edit(bigPath, join(tmp, "from-big.png"));
    expect(fromBig.code, fromBig.err).toBe(0);
    expect((await edit(source, join(tmp, "from-small.png"))).code).toBe(0);
    expect(readFileSync(join(tmp, "from-big.png"))).toEqual(readFileSync(join(tmp, "from-small.png")));
  });

  it("lists its size and every word it knows in `adapters` and `edit --help --adapter tiny`", async () => {
    const listed = await run(["adapters"]);
    const help = await run(["edit", "--help", "--adapter", "tiny"]);
    for (const text of [listed.out, help.out]) {
      expect(text).toMatch(/images: 16×16 RGB; `edit` resizes other sources to 16×16 by nearest neighbour/);
      expect(text).toMatch(/each one of these 33: add remove replace .* circle square triangle diamond/);
      expect(text).toMatch(/adapters\/tiny\/examples/);
    }
  });

  it("train --help lists --seed, --no-bench, --config and the common adapter flags", async () => {
    const r = await run(["train", "--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--seed <N>", "--no-bench", "--config <run.json>", "--resume", "--data", "--reward"])
      expect(r.out).toContain(flag);
    for (const flag of [
      "--model",
      "--device",
      "--lora",
      "--lora-alpha",
      "--lora-scale",
      "--noise-seed",
      "--init-seed",
    ])
      expect(r.out).toMatch(new RegExp(`^  ${flag} <`, "m"));
  });
});
