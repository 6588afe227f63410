/**
 * A seeded generator (mulberry32 for uniforms, Box-Muller for normals) whose whole state is two
 * numbers, so a checkpoint can store it and a resumed run draws exactly the same values.
 */
export interface RngState {
  seed: number;
  /** The second normal of the last Box-Muller pair, not yet handed out. */
  spare: number | null;
}

export class Rng {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`Rng: seed must be a finite number, got ${seed}`);
    this.state = seed >>> 0;
  }

  /** A generator for one named purpose, independent of the others drawn from the same seed. */
  static derive(seed: number, stream: string): Rng {
    // FNV-1a over the stream name, mixed with the seed, so streams never share a sequence.
    let h = 0x811c9dc5 ^ (seed >>> 0);
    for (let i = 0; i < stream.length; i++) {
      h ^= stream.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return new Rng(h >>> 0);
  }

  static fromState(state: RngState): Rng {
    const rng = new Rng(state.seed);
    rng.spare = state.spare;
    return rng;
  }

  getState(): RngState {
    return { seed: this.state, spare: this.spare };
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    if (!(hi > lo)) throw new RangeError(`Rng.int: empty range [${lo}, ${hi})`);
    return lo + Math.floor(this.next() * (hi - lo));
  }

  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    // 1 − u keeps the logarithm's argument in (0, 1].
    const u = 1 - this.next();
    const w = this.next();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.spare = radius * Math.sin(2 * Math.PI * w);
    return radius * Math.cos(2 * Math.PI * w);
  }

  /** A new Float32Array of n standard normals. */
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /** A uniformly random permutation of 0..n−1 (Fisher-Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      const tmp = p[i]!;
      p[i] = p[j]!;
      p[j] = tmp;
    }
    return p;
  }
}
