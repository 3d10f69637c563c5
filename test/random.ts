/** Seeded random generators for the tests and benchmarks (mulberry32: small, fast, reproducible). */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  /** Uniform in [-scale, scale). */
  float(scale = 1): number {
    return (this.next() * 2 - 1) * scale
  }
  /** Float32Array of `n` values uniform in [-scale, scale). */
  array(n: number, scale = 1): Float32Array {
    const a = new Float32Array(n)
    for (let i = 0; i < n; i++) a[i] = this.float(scale)
    return a
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }
}

/**
 * The seed of the property tests (fast-check). Fixed by default, so a run of `npm test` is the
 * same on every machine and in CI; `FUZZ_SEED=<n>` replays a failure fast-check printed, and
 * `FUZZ_SEED=random` explores new inputs.
 */
export const FUZZ_SEED: number =
  process.env.FUZZ_SEED === 'random' ? (Math.random() * 2 ** 31) | 0 : process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261205
