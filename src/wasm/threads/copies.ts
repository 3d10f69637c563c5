/**
 * The main thread's copies of a fused job (one adapter per token): x and y rows in before a
 * granule runs, y rows out once it is done, while the workers compute other granules. A granule's
 * entries are rows (one adapter per token), listed by its tasks.
 */
import type { SegmentPlan } from '../../metadata.js'
import { TASK_FIELDS } from '../records.js'
import type { JobCopies } from './job.js'

/** Where the copies go: the call's arrays and their place in the linear memory. */
export interface CopyTarget {
  plan: SegmentPlan
  /** The shrink tasks of the job and each granule's first task. */
  tasks: Int32Array
  partStart: Int32Array
  /** The linear memory as f32. */
  f32: Float32Array
  x: Float32Array
  y: Float32Array
  /** f32 index of x and y in the memory. */
  x0: number
  y0: number
  inF: number
  outF: number
  /** y lives in a host array (nothing to copy in or out). */
  yInPlace: boolean
  /** The job copies x granule by granule (else all of x is in memory before the job). */
  xByGranule: boolean
}

/** The copies of a fused job (JobCopies.beforeShrink is the two-phase job's: nothing here). */
export function fusedCopies(c: CopyTarget): JobCopies {
  const { plan, tasks, partStart, f32, x, y, x0, y0, inF, outF } = c
  const T = plan.numTokens
  const xDone = c.xByGranule ? new Uint8Array(T) : null! // x rows copied in so far
  const yDone = c.yInPlace ? null! : new Uint8Array(T) // y rows copied in so far
  // the y rows of granule gi, in runs of consecutive rows
  const eachRun = (gi: number, copy: (r: number, n: number) => void) => {
    let r0 = -1,
      n = 0
    for (let t = partStart[gi]; t < partStart[gi + 1]; t++) {
      const o = t * TASK_FIELDS
      const first = plan.segStart[tasks[o]] + tasks[o + 1]
      for (let e = first; e < first + tasks[o + 2]; e++) {
        const r = plan.rows[e]
        if (r === r0 + n) n++
        else {
          if (n > 0) copy(r0, n)
          r0 = r
          n = 1
        }
      }
    }
    if (n > 0) copy(r0, n)
  }
  // rows r0 .. r0 + n - 1 not copied yet, in runs
  const copyRows = (r0: number, n: number, done: Uint8Array, src: Float32Array, width: number, at: number) => {
    for (let r = r0; r < r0 + n; ) {
      if (done[r] === 1) {
        r++
        continue
      }
      let e = r
      while (e < r0 + n && done[e] === 0) done[e++] = 1
      f32.set(src.subarray(r * width, e * width), at + r * width)
      r = e
    }
  }
  // the rows between the granule's first and last row not copied yet: few large copies when a
  // granule's rows are scattered (adapters round-robin over the tokens: 1.02-1.05x at T >= 256);
  // copying rows of later granules early is harmless (their YIN / XIN come later)
  const copySpan = (gi: number, done: Uint8Array, src: Float32Array, width: number, at: number) => {
    let lo = T,
      hi = -1
    eachRun(gi, (r, n) => {
      lo = Math.min(lo, r)
      hi = Math.max(hi, r + n - 1)
    })
    copyRows(lo, hi - lo + 1, done, src, width, at)
  }
  const none = () => {}
  return {
    beforeShrink: none,
    // the first granule's own rows first: a worker starts on it while the rest of x is copied
    copyXIn: (gi) => (gi === 0 ? eachRun(0, (r, n) => copyRows(r, n, xDone, x, inF, x0)) : copySpan(gi, xDone, x, inF, x0)),
    copyIn: c.yInPlace ? none : (gi) => copySpan(gi, yDone, y, outF, y0),
    copyOut: c.yInPlace ? none : (gi) => eachRun(gi, (r, n) => y.set(f32.subarray(y0 + r * outF, y0 + (r + n) * outF), r * outF)),
  }
}
