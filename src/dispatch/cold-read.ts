/**
 * The rate at which one core reads memory that no cache holds: what a call on cold weights is
 * bound by. In serving every layer's adapters pass through the caches between two calls of one
 * layer, so a call reads its weights from memory; the short calibration's weight points run on
 * small warm layers (a cold working set of adapters costs too much to fill), which on the H200
 * host predicted wasm 2-3x faster than it ran (warm, capped at 12 GB/s; cold, 3.6-7 GB/s).
 *
 * Measured on plain buffers, cheaper to make than adapters: 4 MiB chunks, each page written once
 * (the kernel zeroes it), allocated until `maxBytes` or the deadline, then read once in order, one
 * 4-byte value per 64-byte line (the prefetcher fetches every line), each chunk as 4 sequential
 * streams at once, as the wasm kernels read weights (a block of 4 rows of A, several column
 * panels of B): one stream read 3.9 GB/s on the H200 host where the kernels read cold weights at
 * 5.8-8.2 GB/s at T = 1 (bench/regret.ts), and 4 streams read 1.3-1.7x one stream on the 2-core
 * development machine. Once the buffers exceed the
 * last-level cache, the first ones are gone from it by the time the read reaches them, and a
 * sequential read of a working set larger than the cache misses on every line. The buffers are
 * garbage afterwards: nothing is kept, and the wasm memory does not grow.
 */

const CHUNK = 1 << 20 // Int32 values: 4 MiB

/** Sum one value per 64-byte line of `a`, its quarters read side by side (kept apart so that the JIT optimizes it once). */
function sumLines(a: Int32Array): number {
  const q = a.length >> 2
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  for (let i = 0; i < q; i += 16) {
    s0 += a[i]
    s1 += a[i + q]
    s2 += a[i + 2 * q]
    s3 += a[i + 3 * q]
  }
  return s0 + s1 + s2 + s3
}

/**
 * GB/s of one cold sequential read over up to `maxBytes` (allocated in 4 MiB steps while
 * performance.now() < `deadline`; the median chunk), or null when less than `minBytes` could be
 * allocated in time.
 */
export function coldReadGBs(maxBytes: number, minBytes: number, deadline: number): number | null {
  // the JIT first: a read loop still in a baseline tier is slower than memory
  const warm = new Int32Array(1 << 14)
  let sum = 0
  for (let i = 0; i < 400; i++) sum += sumLines(warm)
  const chunks: Int32Array[] = []
  while (chunks.length * CHUNK * 4 < maxBytes && performance.now() < deadline) {
    const a = new Int32Array(CHUNK)
    for (let i = 0; i < CHUNK; i += 1024) a[i] = 1 // one write per 4 KiB page: the page is real
    chunks.push(a)
  }
  if (chunks.length * CHUNK * 4 < minBytes) return null
  // timed chunk by chunk, the median kept: a chunk takes well under a scheduler's time slice, so
  // on a busy machine most chunks run uninterrupted and the preempted ones drop out
  const ms: number[] = []
  for (const a of chunks) {
    const t0 = performance.now()
    sum += sumLines(a)
    ms.push(performance.now() - t0)
  }
  ms.sort((p, q) => p - q)
  const median = ms[ms.length >> 1]
  // (the sum is never negative: the check keeps the reads from being optimized away)
  return median > 0 && sum >= 0 ? (CHUNK * 4) / median / 1e6 : null
}

/**
 * The short calibration's probe: 16-48 MiB, at most 30 ms allocating them and none past
 * `deadline`; null when too little was allocated, or when the rate is 30x off a typical one-core
 * read rate (12 GB/s): a preempted measurement, not this machine.
 */
export function probeColdRead(deadline: number): number | null {
  const cold = coldReadGBs(48 << 20, 16 << 20, Math.min(deadline, performance.now() + 30))
  return cold !== null && cold > 12 / 30 && cold < 12 * 30 ? cold : null
}
