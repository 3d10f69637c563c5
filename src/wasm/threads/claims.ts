// Claims of granules (protocol.ts): an atomic counter per phase, or per thread's home range in a
// fused job (control.ts HOME), each packed as the job's tag above the next granule's index.
import { GRANULES, HOME, HOMES, INDEX_BITS, NEXT1 } from './control.js'

/** Claim the next granule below `end` of counter `word` for the job tagged `tag`; -1 when none is left. */
export function claim(ctrl: Int32Array, word: number, tag: number, end = ctrl[GRANULES]): number {
  for (;;) {
    const v = Atomics.load(ctrl, word)
    if (v >>> INDEX_BITS !== tag) return -1
    const i = v & ((1 << INDEX_BITS) - 1)
    if (i >= end) return -1
    if (Atomics.compareExchange(ctrl, word, v, v + 1) === v) return i
  }
}

/**
 * Fused: the next granule for thread `self`: from its home range (control.ts HOME), then from the
 * others' in turn; or from the one counter when the job has no home ranges.
 */
export function claimFusedNext(ctrl: Int32Array, tag: number, self: number): number {
  const homes = ctrl[HOMES]
  if (homes === 0) return claim(ctrl, NEXT1, tag)
  const threads = ctrl[GRANULES] / homes
  for (let j = 0; j < threads; j++) {
    const t = (self + j) % threads
    const i = claim(ctrl, HOME + t, tag, (t + 1) * homes)
    if (i >= 0) return i
  }
  return -1
}
