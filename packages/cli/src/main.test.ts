import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "./main.js";
import { capture } from "./test-cli.js";

describe("edit-r1 main", () => {
  it("prints help listing every command", async () => {
    const c = capture();
    expect(await main([], c.io)).toBe(0);
    for (const name of ["train", "bench", "edit", "judge", "download", "replica"])
      expect(c.out.join("\n")).toContain(name);
  });

  it("rejects unknown commands, flags and adapters with exit code 2 and a message", async () => {
    const c = capture();
    expect(await main(["frobnicate"], c.io)).toBe(2);
    expect(c.err.join("\n")).toMatch(/Unknown command "frobnicate"/);
    const d = capture();
    expect(await main(["bench", "--nope"], d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/Usage: edit-r1 bench/);
    const e = capture();
    expect(await main(["bench", "--adapter", "nope", "--benchmark", "shapes"], e.io)).toBe(2);
    expect(e.err.join("\n")).toMatch(/Unknown adapter "nope"/);
    const f = capture();
    expect(await main(["bench", "--benchmark", "shapes"], f.io)).toBe(2);
    expect(f.err.join("\n")).toMatch(/--adapter is required/);
  });

  it("serves the shapes judge over HTTP on loopback until interrupted", async () => {
    const c = capture();
    const controller = new AbortController();
    const running = main(["judge", "serve", "--port", "0"], c.io, { signal: controller.signal });
    // The server starts after the command's modules load, which takes a while on a busy machine.
    for (let i = 0; i < 3000 && !c.out.length; i++) await new Promise((r) => setTimeout(r, 10));
    const url = /at (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(c.out.join("\n"))?.[1];
    expect(url).toBeDefined();
    const models = (await (await fetch(`${url}/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(["shapes"]);
    controller.abort();
    expect(await running).toBe(0);
  });

  it("names the missing model folder when editing with flux-kontext", async () => {
    const c = capture();
    const args = ["edit", "--adapter", "flux-kontext", "--model", "/nonexistent/kontext"];
    const code = await main(
      [...args, "--image", "../../fixtures/images/chelsea.png", "--instruction", "x", "--out", "/tmp/x.png"],
      c.io,
      {
        env: { HF_HUB_OFFLINE: "1" },
      },
    );
    expect(code).toBe(1);
    expect(c.err.join("\n")).toMatch(/nonexistent\/kontext/);
  });

  it("pretrains the tiny model for a few steps into a folder the adapter loads, and refuses other adapters", async () => {
    const out = mkdtempSync(join(tmpdir(), "pretrain-"));
    const c = capture();
    expect(await main(["pretrain", "--steps", "2", "--batch", "2", "--out", out], c.io)).toBe(0);
    expect(existsSync(join(out, "tiny.safetensors"))).toBe(true);
    const d = capture();
    expect(await main(["pretrain", "--adapter", "flux-kontext"], d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/only built for the embedded tiny adapter/);
  });

  it("refuses to download while HF_HUB_OFFLINE is set", async () => {
    const c = capture();
    const code = await main(["download", "--adapter", "flux-kontext"], c.io, {
      env: { HF_HUB_OFFLINE: "1" },
    });
    expect(code).toBe(1);
    expect(c.err.join("\n")).toMatch(/HF_HUB_OFFLINE/);
  });
});

describe("edit-r1 adapters (the registry is the package's adapter dependencies)", () => {
  it("lists every @edit-r1/adapter-* dependency with its own description", async () => {
    const c = capture();
    expect(await main(["adapters"], c.io)).toBe(0);
    const text = c.out.join("\n");
    expect(text).toMatch(/^tiny: the embedded default/m);
    expect(text).toMatch(/^flux-kontext: FLUX\.1-Kontext-dev/m);
    expect(text).toMatch(/weights: black-forest-labs\/FLUX\.1-Kontext-dev/);
  });

  it("downloads from the adapter's own repo and patterns, and says when there is nothing to download", async () => {
    const c = capture();
    expect(await main(["download", "--adapter", "tiny"], c.io, { env: { HF_HUB_OFFLINE: "1" } })).toBe(2);
    expect(c.err.join("\n")).toMatch(/"tiny" has nothing to download: its weights ship with the package/);
    const d = capture();
    expect(
      await main(["download", "--adapter", "flux-kontext"], d.io, { env: { HF_HUB_OFFLINE: "1" } }),
    ).toBe(1);
    expect(d.err.join("\n")).toMatch(/FLUX\.1-Kontext-dev/);
  });

  it("rejects adapter options the adapter cannot honour, naming the adapter and the option", async () => {
    const run = async (...flags: string[]) => {
      const c = capture();
      const code = await main(
        [
          "edit",
          "--adapter",
          "tiny",
          "--image",
          "x.png",
          "--instruction",
          "x",
          "--out",
          "/tmp/o.png",
          ...flags,
        ],
        c.io,
      );
      return { code, err: c.err.join("\n") };
    };
    // Values the adapter cannot take (core's checkAdapter) came from flags: usage errors, exit 2, like the
    // malformed values below; exit 1 is for failures while running.
    expect(await run("--guidance", "3")).toMatchObject({
      code: 2,
      err: expect.stringMatching(/"tiny" has no guidance/),
    });
    expect(await run("--dtype", "float16")).toMatchObject({
      code: 2,
      err: expect.stringMatching(/"tiny" does not compute in float16/),
    });
    expect(await run("--resolution", "32x32")).toMatchObject({
      code: 2,
      err: expect.stringMatching(/"tiny" does not generate 32×32/),
    });
    expect(await run("--dtype", "int8")).toMatchObject({
      code: 2,
      err: expect.stringMatching(/--dtype must be one of/),
    });
    expect(await run("--resolution", "big")).toMatchObject({
      code: 2,
      err: expect.stringMatching(/--resolution must be WIDTHxHEIGHT/),
    });
  });
});

// A third-party adapter module (loaded by path, as `--adapter @scope/pkg` would be) whose writeReplica writes
// two files that record the seed; seed 13 makes it fail halfway, after writing one file.
const FAKE_ADAPTER = `
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
export const adapter = {
  name: "fake",
  interfaceVersion: 1,
  capabilities: { guidance: "none", resolutions: "any", maxSourceImages: 1, loraTargets: [], dtypes: ["float32"],
    devices: ["cpu"], trainable: false },
  cli: {
    description: "a fake adapter",
    async writeReplica(dir, { seed }) {
      await mkdir(join(dir, "transformer"), { recursive: true });
      await writeFile(join(dir, "model_index.json"), JSON.stringify({ seed }));
      if (seed === 13) throw new Error("disk full (fake)");
      await writeFile(join(dir, "transformer", "weights.bin"), new Uint8Array(2048 + seed));
    },
  },
  loadEditor: async () => { throw new Error("not used"); },
};
`;

describe("edit-r1 replica", () => {
  const root = mkdtempSync(join(tmpdir(), "replica-cli-"));
  const fake = join(root, "fake-adapter.mjs");
  writeFileSync(fake, FAKE_ADAPTER);
  const run = async (...args: string[]) => {
    const c = capture();
    const code = await main(["replica", "--adapter", fake, ...args], c.io);
    return { code, out: c.out.join("\n"), err: c.err.join("\n") };
  };
  const siblings = (dir: string) => readdirSync(dir).sort();

  it("writes the adapter's replica into a new folder, listing the files, their total size and what to run next", async () => {
    const out = join(root, "nested", "ckpt");
    const r = await run("--out", out, "--seed", "5");
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(join(out, "model_index.json"), "utf8"))).toEqual({ seed: 5 });
    expect(statSync(join(out, "transformer", "weights.bin")).size).toBe(2048 + 5);
    const total = 2048 + 5 + statSync(join(out, "model_index.json")).size;
    expect(r.out).toContain(`${out}: 2 files, ${(total / 1024).toFixed(1)} KiB`);
    expect(r.out).toMatch(/^ {2}model_index\.json +\d+ B$/m);
    expect(r.out).toMatch(/^ {2}transformer\/weights\.bin +2\.0 KiB$/m);
    expect(r.out).toContain(`edit-r1 edit --adapter ${fake} --model ${out} --image`);
    expect(r.out).not.toContain("edit-r1 train"); // the fake adapter is not trainable
    // Nothing left beside it: the temporary folder was renamed into place.
    expect(siblings(join(root, "nested"))).toEqual(["ckpt"]);
    // The seed defaults to 0.
    const again = await run("--out", join(root, "default-seed"));
    expect(again.code).toBe(0);
    expect(JSON.parse(readFileSync(join(root, "default-seed", "model_index.json"), "utf8"))).toEqual({
      seed: 0,
    });
  });

  it("refuses a non-empty folder without --force, leaving it as it was, and replaces it with --force", async () => {
    const out = join(root, "full");
    mkdirSync(out);
    writeFileSync(join(out, "keep.txt"), "mine");
    const refused = await run("--out", out);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--out .*full already exists and is not empty.*--force/);
    expect(siblings(out)).toEqual(["keep.txt"]);
    const forced = await run("--out", out, "--force", "--seed", "2");
    expect(forced.code).toBe(0);
    expect(siblings(out)).toEqual(["model_index.json", "transformer"]);
    expect(siblings(root).filter((n) => n.startsWith(".full"))).toEqual([]);
    // An empty folder is fine without --force; a file is not, even with it.
    const empty = join(root, "empty");
    mkdirSync(empty);
    expect((await run("--out", empty)).code).toBe(0);
    expect(siblings(empty)).toEqual(["model_index.json", "transformer"]);
    const file = join(root, "a-file");
    writeFileSync(file, "x");
    const onFile = await run("--out", file, "--force");
    expect(onFile.code).toBe(2);
    expect(onFile.err).toMatch(/is a file/);
  });

  it("keeps the old folder and leaves no partial replica when the adapter fails halfway", async () => {
    const out = join(root, "kept");
    mkdirSync(out);
    writeFileSync(join(out, "keep.txt"), "mine");
    const failed = await run("--out", out, "--force", "--seed", "13");
    expect(failed.code).toBe(1);
    expect(failed.err).toMatch(/disk full \(fake\)/);
    expect(readFileSync(join(out, "keep.txt"), "utf8")).toBe("mine");
    expect(siblings(out)).toEqual(["keep.txt"]);
    const fresh = join(root, "never");
    expect((await run("--out", fresh, "--seed", "13")).code).toBe(1);
    expect(existsSync(fresh)).toBe(false);
    expect(siblings(root).filter((n) => n.startsWith("."))).toEqual([]);
  });

  it("names the flags it needs and the adapters that can write a replica", async () => {
    const c = capture();
    expect(await main(["replica", "--adapter", "tiny", "--out", join(root, "tiny")], c.io)).toBe(2);
    expect(c.err.join("\n")).toMatch(
      /adapter "tiny" cannot write a replica.*(Adapters that can: [a-z-]+|None of the installed adapters can)/,
    );
    expect(existsSync(join(root, "tiny"))).toBe(false);
    expect((await run()).err).toMatch(/--out is required/);
    expect((await run("--out", join(root, "x"), "--seed", "1.5")).err).toMatch(
      /--seed must be an integer ≥ 0/,
    );
    const d = capture();
    expect(await main(["replica", "--out", join(root, "y")], d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/--adapter is required/);
  });
});
