/** Median time of fn in ms: repeated until minMs has elapsed and at least minReps runs, after one warm-up. */
export async function time(fn: () => unknown, { minMs = 200, minReps = 3, maxReps = 1000 } = {}): Promise<number> {
  await fn()
  const samples: number[] = []
  const start = performance.now()
  while (samples.length < maxReps && (samples.length < minReps || performance.now() - start < minMs)) {
    const t0 = performance.now()
    await fn()
    samples.push(performance.now() - t0)
  }
  samples.sort((a, b) => a - b)
  return samples[samples.length >> 1]
}
