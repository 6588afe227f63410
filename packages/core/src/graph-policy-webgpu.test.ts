import { Runtime } from "@edit-r1/engine";
import { webgpuForTests } from "@edit-r1/engine/testing";
import { afterAll, describe, expect, it } from "vitest";
import { GraphNftPolicyCore } from "./graph-policy.js";
import { Rng } from "./rng.js";
import { velocityMlp } from "./test-velocity-mlp.js";

const WEBGPU = await webgpuForTests("resident rollout feeds on webgpu");

const TOKENS = 4;
const CHANNELS = 3;
const COND = 5;
const B = 2;
const mlp = velocityMlp({ tokens: TOKENS, channels: CHANNELS, condDim: COND, hidden: 8, rank: 2, seed: 11 });
const runtime = new Runtime();
afterAll(() => runtime.close());

/**
 * Rollouts on webgpu keep their fixed feeds (conditions, θ) in GPU memory for the whole rollout: the velocity
 * equals the CPU's (float32, within 1e-5 of the output scale), those feeds are device values after the first
 * step, at most two rollouts' feeds are held, and a rollout whose feeds were dropped uploads them again.
 */
describe.runIf(WEBGPU)("GraphNftPolicyCore.velocity on webgpu", () => {
  it("uploads a rollout's conditions and θ once, keeps two rollouts, and re-uploads a dropped one", async () => {
    const gpu = new GraphNftPolicyCore(mlp.spec, { runtime, device: "webgpu" });
    const cpu = new GraphNftPolicyCore(mlp.spec, { runtime });
    const rng = new Rng(3);
    const rollout = (seed: number) => ({
      conditions: { cond: new Rng(seed).normals(B * COND) },
      params: mlp.initialParameters(seed, true),
    });
    const x = rng.normals(B * TOKENS * CHANNELS);
    const check = async (r: ReturnType<typeof rollout>, fn: ReturnType<GraphNftPolicyCore["velocity"]>) => {
      const want = await cpu.velocity(r.conditions, r.params, B)(x, 0.7, 0);
      const got = await fn(x, 0.7, 0);
      const scale = Math.max(...Array.from(want, Math.abs));
      for (let i = 0; i < want.length; i++)
        expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-5 * scale);
    };
    const rollouts = [rollout(1), rollout(2), rollout(3)];
    const fns = rollouts.map((r) => gpu.velocity(r.conditions, r.params, B));
    await check(rollouts[0]!, fns[0]!);
    const values = gpu.rolloutValues!;
    const held = () => values.names.map((n) => `${n}:${values.spec(n)!.where}`).sort();
    const first = held();
    expect(first.length).toBeGreaterThan(1);
    expect(first.every((n) => n.startsWith("rollout0/") && n.endsWith(":device"))).toBe(true);
    expect(first.some((n) => n.includes("/cond.cond"))).toBe(true);
    // Later steps of the same rollout upload nothing more.
    await check(rollouts[0]!, fns[0]!);
    expect(held()).toEqual(first);
    await check(rollouts[1]!, fns[1]!);
    await check(rollouts[2]!, fns[2]!);
    const prefixes = new Set(values.names.map((n) => n.split("/")[0]));
    expect([...prefixes].sort()).toEqual(["rollout1", "rollout2"]);
    // The first rollout's feeds were dropped; its next step uploads them again and is still right.
    await check(rollouts[0]!, fns[0]!);
    expect(new Set(values.names.map((n) => n.split("/")[0]))).toEqual(new Set(["rollout2", "rollout0"]));
    await gpu.dispose();
    await cpu.dispose();
  });
});
