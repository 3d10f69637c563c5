/**
 * Side-by-side timing: every contender of a grid point runs once per round, in an order rotated
 * each round, so that slow drifts of a shared machine hit all of them alike. Per contender: the
 * lower quartile over rounds (on a loaded machine noise only ever adds time: preemption by other
 * processes), the median, and the interquartile spread relative to the lower quartile (our noise
 * figure).
 */

export interface Contender {
  id: string
  /** One call on the next set of cold weights. */
  call(): unknown
}

export interface Timing {
  id: string
  /** Lower quartile of ms per call: the figure every ratio uses. */
  ms: number
  median: number
  /** (q3 - q1) / q1 over the samples. */
  spread: number
  samples: number
  /** ms of each round, in round order (empty when timed once): for ratios round by round. */
  rounds: number[]
  /** Why it was timed once only (its warm-up was far slower than the rest). */
  note?: string
}

export interface RoundOptions {
  /** Keep running rounds until this much time has passed (ms)... */
  budgetMs: number
  /** ...and at least this many rounds; never more than maxRounds. */
  minRounds: number
  maxRounds: number
  /** A contender whose warm-up exceeds this (ms) and 5x the fastest warm-up is not repeated. */
  slowMs: number
  /** Warm-up times already taken (e.g. by the correctness check), by contender id. */
  warm?: Map<string, number>
}

async function once(c: Contender, k: number): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < k; i++) await c.call()
  return (performance.now() - t0) / k
}

export async function interleave(contenders: readonly Contender[], o: RoundOptions): Promise<Timing[]> {
  const warm = new Map<string, number>()
  for (const c of contenders) warm.set(c.id, o.warm?.get(c.id) ?? (await once(c, 1)))
  const fastest = Math.min(...warm.values())
  // a slow warm-up may have been compilation (GPU pipelines): time those once more before judging
  for (const c of contenders) {
    if (warm.get(c.id)! > o.slowMs && warm.get(c.id)! > 5 * fastest) warm.set(c.id, await once(c, 1))
  }
  const timed = contenders.filter((c) => !(warm.get(c.id)! > o.slowMs && warm.get(c.id)! > 5 * fastest))
  // calls far below a millisecond are timed in batches of k (timer resolution, call jitter)
  const batch = new Map(timed.map((c) => [c.id, Math.min(50, Math.max(1, Math.ceil(0.5 / Math.max(1e-3, warm.get(c.id)!))))]))
  const samples = new Map<string, number[]>(timed.map((c) => [c.id, []]))
  const start = performance.now()
  for (let r = 0; r < o.maxRounds && (r < o.minRounds || performance.now() - start < o.budgetMs); r++) {
    for (let i = 0; i < timed.length; i++) {
      const c = timed[(i + r) % timed.length]
      samples.get(c.id)!.push(await once(c, batch.get(c.id)!))
    }
  }
  return contenders.map((c) => {
    const s = samples.get(c.id)
    if (!s)
      return {
        id: c.id,
        ms: warm.get(c.id)!,
        median: warm.get(c.id)!,
        spread: NaN,
        samples: 1,
        rounds: [],
        note: 'one call after warm-up (far slower than the rest)',
      }
    const rounds = [...s]
    s.sort((a, b) => a - b)
    const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * (s.length - 1) + 0.5))]
    return { id: c.id, ms: q(0.25), median: q(0.5), spread: (q(0.75) - q(0.25)) / q(0.25), samples: s.length, rounds }
  })
}

/**
 * time(a) / time(b) for two contenders that must be compared closely (the regret: 'auto' against
 * the best forced backend): pairs of calls back to back, the order alternating, the median of the
 * per-pair ratios. At least `minPairs`, then until `budgetMs` has passed or `maxPairs`.
 */
export async function pairedRatio(
  a: Contender,
  b: Contender,
  o: { budgetMs: number; minPairs: number; maxPairs: number; callMs: number },
): Promise<PairedRatio> {
  const k = Math.min(50, Math.max(1, Math.ceil(0.5 / Math.max(1e-3, o.callMs))))
  const ratios: number[] = []
  const start = performance.now()
  for (let i = 0; i < o.maxPairs && (i < o.minPairs || performance.now() - start < o.budgetMs); i++) {
    let ta: number, tb: number
    if (i % 2 === 0) (ta = await once(a, k)), (tb = await once(b, k))
    else (tb = await once(b, k)), (ta = await once(a, k))
    ratios.push(ta / tb)
  }
  ratios.sort((x, y) => x - y)
  const [low, high] = medianInterval(ratios)
  return { ratio: ratios[(ratios.length - 1) >> 1], pairs: ratios.length, low, high }
}

export interface PairedRatio {
  /** Median of the per-pair ratios. */
  ratio: number
  pairs: number
  /** 90% bootstrap interval of that median: how far the machine's noise moves it. */
  low: number
  high: number
}

/**
 * 90% interval of the median of `xs` by the percentile bootstrap (2000 resamples, a fixed seed so
 * that a result file can be recomputed from its samples).
 */
export function medianInterval(xs: readonly number[], resamples = 2000): [number, number] {
  const n = xs.length
  if (n < 2) return [xs[0] ?? NaN, xs[0] ?? NaN]
  let seed = 12345
  const rand = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) | 0) >>> 0) / 2 ** 32
  const medians = new Float64Array(resamples)
  const sample = new Float64Array(n)
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < n; i++) sample[i] = xs[Math.floor(rand() * n)]
    sample.sort()
    medians[b] = sample[(n - 1) >> 1]
  }
  medians.sort()
  return [medians[Math.floor(0.05 * (resamples - 1))], medians[Math.ceil(0.95 * (resamples - 1))]]
}
