/**
 * How one call's work is cut into parts (one per thread), for assembly/threads.ts.
 *
 * Shrink: H rows. A segment stays whole unless it is a big share of the call: its A
 * is then read by one thread only (cut in two, both threads would pull the same A from memory).
 * Big segments are cut in the same entry groups as the single-threaded kernel (blocks of 4 entries
 * from the segment's start, then a pair, then a single entry), so that every H value is computed by the same
 * instruction sequence and the result is bit-identical. A single entry may be cut further by rows
 * of A (multiples of 4), which is how T = 1 uses several threads. Parts are contiguous runs of
 * these units with about equal multiply-adds.
 * Expand: y's output columns, cut at 8-column panel boundaries inside a slice (or at slice
 * boundaries): the work of a column is the same for every column.
 */
import type { SegmentPlan } from '../../metadata.js'
import { TASK_FIELDS } from '../records.js'

export { TASK_FIELDS }

/**
 * Relative sizes of the granules of one phase for `threads` threads that claim them in order
 * (protocol.ts): guided self-scheduling, each granule 1/(divisor threads) of the work left, but
 * no smaller than 1/(4 count). Early granules are bigger (fewer claims), the last ones small, so
 * that the threads finish a phase close together (with equal granules, one granule's time
 * apart). A divisor of 4 rather than the classic 2 keeps the first granules at 1/8 of the work for
 * 2 threads: a thread descheduled while it holds one (a loaded machine) holds less work up.
 * @param count granules (the last ones may be 0 once the work is used up); with divisor 4, 16 per
 *   thread leave about 1/64 of the work to the last one
 */
export function granuleShares(threads: number, count: number, divisor = 4): number[] {
  const shares: number[] = []
  const floor = 1 / (4 * count)
  let left = 1
  for (let i = 0; i < count - 1; i++) {
    const s = Math.min(left, Math.max(left / (divisor * threads), floor))
    shares.push(s)
    left -= s
  }
  shares.push(Math.max(left, 0))
  return shares
}

/**
 * Relative sizes of the granules of `threads` home ranges of `homes` granules each (protocol.ts):
 * equal ranges, each cut in sizes homes, homes - 1, .., 1, so that the granules left for the
 * other threads to take at the end of a range are the small ones.
 */
export function homeShares(threads: number, homes: number): number[] {
  const sum = (homes * (homes + 1)) / 2
  const shares: number[] = []
  for (let t = 0; t < threads; t++) for (let k = homes; k >= 1; k--) shares.push(k / sum / threads)
  return shares
}

export interface ShrinkSplit {
  /** [numTasks * TASK_FIELDS] (g, e0, n, k0, k1), grouped by part. */
  tasks: Int32Array
  /** [parts + 1] first task of each part. */
  partStart: Int32Array
}

/**
 * @param plan   the call's segments
 * @param ranks  [numSeg] rank of each segment's slot
 * @param numSlices S (a segment's A has R = S * rank rows)
 * @param shares [parts] relative amount of work of each part (e.g. all 1)
 * @param wholeUpTo segments of at most this fraction of the call's work are never cut
 *   (default: two parts' worth)
 * @param cutRows whether a single entry may be cut by rows of A (false: every task has whole
 *   H rows, as the fused tasks of assembly/threads.ts need)
 */
export function splitShrink(
  plan: SegmentPlan,
  ranks: Int32Array,
  numSlices: number,
  shares: readonly number[],
  wholeUpTo = 2 / shares.length,
  cutRows = true,
): ShrinkSplit {
  const P = shares.length
  const numSeg = plan.segSlot.length
  let total = 0
  for (let g = 0; g < numSeg; g++) total += plan.segLength[g] * ranks[g] * numSlices
  const shareSum = shares.reduce((a, b) => a + b, 0)
  const ends: number[] = [] // cumulative cost where part p should end
  for (let p = 0, c = 0; p < P; p++) ends.push((total * (c += shares[p])) / shareSum)
  const out: number[] = []
  const partStart = new Int32Array(P + 1)
  let p = 0
  let acc = 0
  const emit = (g: number, e0: number, n: number, k0: number, k1: number, R: number) => {
    const last = out.length - TASK_FIELDS
    // extend the previous task of this part when it holds the same segment's preceding entries,
    // whole rows: tasks start at a block of 4, the pair or the single, so the kernel still
    // groups the entries as the single-threaded one does
    if (
      out.length / TASK_FIELDS > partStart[p] &&
      k0 === 0 &&
      k1 === R &&
      out[last] === g &&
      out[last + 3] === 0 &&
      out[last + 4] === R &&
      out[last + 1] + out[last + 2] === e0
    ) {
      out[last + 2] += n
    } else out.push(g, e0, n, k0, k1)
    acc += n * (k1 - k0)
  }
  const nextPart = () => {
    p++
    partStart[p] = out.length / TASK_FIELDS
  }
  for (let g = 0; g < numSeg; g++) {
    const n = plan.segLength[g]
    const R = ranks[g] * numSlices
    if (n > 1 && n * R <= wholeUpTo * total) {
      // a whole segment: goes to the part where its middle falls
      while (p < P - 1 && acc + (n * R) / 2 > ends[p]) nextPart()
      emit(g, 0, n, 0, R, R)
      continue
    }
    // the kernel's entry groups: blocks of 4, then a pair, then a single
    const blocks = n >> 2
    const pair = (n & 3) >= 2 ? 1 : 0
    const units = blocks + pair + ((n & 3) - 2 * pair)
    for (let b = 0; b < units; b++) {
      const e0 = b < blocks ? b * 4 : b < blocks + pair ? blocks * 4 : blocks * 4 + 2 * pair + (b - blocks - pair)
      const m = b < blocks ? 4 : b < blocks + pair ? 2 : 1
      if (m === 1 && R >= 8 && cutRows) {
        // one entry: cut by rows of A wherever a part boundary falls inside it, at multiples of 4
        // (A is stored in blocks of 4 rows, assembly/shrink.ts) and never past R
        let k = 0
        while (k < R) {
          const room = p === P - 1 ? Infinity : ends[p] - acc
          if (room >= R - k) {
            emit(g, e0, 1, k, R, R)
            k = R
          } else {
            const k1 = Math.min(R, k + Math.floor(room / 4 + 0.5) * 4)
            if (k1 > k) emit(g, e0, 1, k, k1, R)
            k = Math.max(k, k1)
            nextPart()
          }
        }
      } else {
        const cost = m * R
        while (p < P - 1 && acc + cost / 2 > ends[p]) nextPart()
        emit(g, e0, m, 0, R, R)
      }
    }
  }
  while (p < P - 1) nextPart()
  partStart[P] = out.length / TASK_FIELDS
  return { tasks: Int32Array.from(out), partStart }
}

/**
 * Column ranges of the expand: [parts + 1] boundaries c_0 = 0 <= c_1 <= ... <= c_P = outF, each
 * a slice start or a slice start + 8j.
 * @param widths slice widths
 * @param shares [parts] relative amount of work of each part
 */
export function splitColumns(widths: readonly number[], shares: readonly number[]): Int32Array {
  const P = shares.length
  const outF = widths.reduce((a, b) => a + b, 0)
  const shareSum = shares.reduce((a, b) => a + b, 0)
  const cuts = new Int32Array(P + 1)
  cuts[P] = outF
  let c = 0
  for (let p = 1; p < P; p++) {
    c += shares[p - 1]
    const target = (outF * c) / shareSum
    // the slice holding the target, then the nearest panel boundary inside it
    let off = 0
    let s = 0
    while (s < widths.length - 1 && off + widths[s] <= target) off += widths[s++]
    const cut = Math.min(off + Math.round((target - off) / 8) * 8, off + widths[s])
    cuts[p] = Math.max(cuts[p - 1], cut)
  }
  return cuts
}
