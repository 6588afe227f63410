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
    for (const name of ["train", "bench", "edit", "judge"]) expect(c.out.join("\n")).toContain(name);
  });
  it("rejects unknown commands and flags with exit code 2 and a message", async () => {
    const c = capture();
    expect(await main(["frobnicate"], c.io)).toBe(2);
    expect(c.err.join("\n")).toMatch(/Unknown command "frobnicate"/);
    const d = capture();
    expect(await main(["bench", "--nope"], d.io)).toBe(2);
    expect(d.err.join("\n")).toMatch(/Usage: edit-r1 bench/);
  });
});
