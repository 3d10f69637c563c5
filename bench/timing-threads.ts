/** Timing helpers of bench/threads.ts: short batches of calls, medians and quartiles. */

/** Mean ms per call of `fn` over a batch of at least `minMs` (and at least 2 calls), after one warm-up call. */
export async function timeBatch(fn: () => unknown, minMs = 25): Promise<number> {
  await fn()
  let n = 0
  const t0 = performance.now()
  let t = t0
  while (n < 2 || t - t0 < minMs) {
    await fn()
    n++
    t = performance.now()
  }
  return (t - t0) / n
}

export function median(xs: readonly number[]): number {
  return quartiles(xs)[1]
}

/** First quartile, median, third quartile (linear interpolation). */
export function quartiles(xs: readonly number[]): [number, number, number] {
  const s = [...xs].sort((a, b) => a - b)
  const at = (q: number) => {
    const i = q * (s.length - 1)
    const lo = Math.floor(i)
    return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo)
  }
  return [at(0.25), at(0.5), at(0.75)]
}
