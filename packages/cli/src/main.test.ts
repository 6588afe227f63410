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
