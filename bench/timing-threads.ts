/** Timing helpers of bench/threads.ts: batches of individually timed calls, percentiles. */

/**
 * Time calls of `fn` one by one for at least `minMs` (and at least 2 calls), after one warm-up
 * call; returns each call's ms.
 */
export async function timeCalls(fn: () => unknown, minMs = 20): Promise<number[]> {
  await fn()
  const out: number[] = []
  const t0 = performance.now()
  let t = t0
  while (out.length < 2 || t - t0 < minMs) {
    await fn()
    const now = performance.now()
    out.push(now - t)
    t = now
  }
  return out
}

/** The q-quantile (0..1) of xs, linear interpolation. */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  const i = q * (s.length - 1)
  const lo = Math.floor(i)
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo)
}
