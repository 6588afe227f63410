import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "./main.js";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

describe("edit-r1 main", () => {
  it("prints help listing every command", async () => {
    const c = capture();
    expect(await main([], c.io)).toBe(0);
    for (const name of ["train", "bench", "edit", "judge", "download"])
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
    expect(await run("--guidance", "3")).toMatchObject({
      code: 1,
      err: expect.stringMatching(/"tiny" has no guidance/),
    });
    expect(await run("--dtype", "float16")).toMatchObject({
      code: 1,
      err: expect.stringMatching(/"tiny" does not compute in float16/),
    });
    expect(await run("--resolution", "32x32")).toMatchObject({
      code: 1,
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
