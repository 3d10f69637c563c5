/**
 * One job of the threaded wasm backend: its kernel arguments and granules, written into the
 * control block (control.ts) for the threads that claim them, and the copies the main thread
 * makes while it runs.
 */
import {
  A_DTYPE,
  A_H,
  A_HROW,
  A_INF,
  A_NSLICES,
  A_NUMSEG,
  A_OUTF,
  A_ROWS,
  A_SEGS,
  A_SLOTS,
  A_TASKS,
  A_WIDTHS,
  A_X,
  A_Y,
  DONE1,
  DONE2,
  GDONE,
  GRANULES,
  HOME,
  HOMES,
  INDEX_BITS,
  MODE,
  MODE_FUSED,
  MODE_PHASES,
  NEXT1,
  NEXT2,
  NO_CLAIMS,
  PART,
  TAG_MASK,
  XIN,
  YIN,
} from './control.js'

/** Kernel arguments of one job (byte addresses into the shared memory, and sizes). */
export interface JobArgs {
  dtype: number
  x: number
  inF: number
  rows: number
  segs: number
  numSeg: number
  slots: number
  numSlices: number
  h: number
  hRow: number
  tasks: number
  y: number
  outF: number
  widths: number
  /** [granules + 1] first shrink task of each granule. */
  partStart: Int32Array
  /** [granules + 1] column boundaries of the granules (phases mode). */
  cuts: Int32Array
  /** Fused mode (control.ts MODE_FUSED): granules are runs of whole entries, no expand phase. */
  fused: boolean
  /** Fused: x is not in memory yet, the main thread copies each granule's x rows (copyXIn). */
  xByGranule: boolean
  /**
   * Fused: 0 (one claim counter for all granules), or the granules of each thread's home range
   * (control.ts HOME: granules = threads * homes, thread t's range the t-th run of `homes`).
   */
  homes: number
}

/** Copies the main thread makes while the job runs. */
export interface JobCopies {
  /** Phases: copy y in (the expand's input), while the workers run the shrink. */
  beforeShrink(): void
  /** Fused, with xByGranule: copy the x rows of granule i in, before it is shrunk. */
  copyXIn(i: number): void
  /** Fused: copy the y rows of granule i in, before it is expanded. */
  copyIn(i: number): void
  /** Fused: copy the y rows of granule i out, once it is done. */
  copyOut(i: number): void
}

/**
 * Write job `gen` into the control block `c` and open its claims (the seq-cst stores of the claim
 * counters publish every field to the claimers). Returns its granules.
 */
export function writeJob(c: Int32Array, job: JobArgs, gen: number): number {
  const granules = job.partStart.length - 1
  // no claims while the job is rewritten (a late worker of the previous job may still look)
  Atomics.store(c, NEXT1, NO_CLAIMS)
  Atomics.store(c, NEXT2, NO_CLAIMS)
  const homes = job.fused ? job.homes : 0
  const threads = homes > 0 ? granules / homes : 0
  for (let t = 0; t < threads; t++) Atomics.store(c, HOME + t, NO_CLAIMS)
  c[HOMES] = homes
  c[A_DTYPE] = job.dtype
  c[A_X] = job.x
  c[A_INF] = job.inF
  c[A_ROWS] = job.rows
  c[A_SEGS] = job.segs
  c[A_NUMSEG] = job.numSeg
  c[A_SLOTS] = job.slots
  c[A_NSLICES] = job.numSlices
  c[A_H] = job.h
  c[A_HROW] = job.hRow
  c[A_TASKS] = job.tasks
  c[A_Y] = job.y
  c[A_OUTF] = job.outF
  c[A_WIDTHS] = job.widths
  for (let p = 0; p < granules; p++) {
    const o = PART + 4 * p
    c[o] = job.partStart[p]
    c[o + 1] = job.partStart[p + 1] - job.partStart[p]
    c[o + 2] = job.cuts[p]
    c[o + 3] = job.cuts[p + 1]
  }
  c[GRANULES] = granules
  c[MODE] = job.fused ? MODE_FUSED : MODE_PHASES
  c[YIN] = 0
  c[XIN] = job.fused && job.xByGranule ? 0 : granules
  c.fill(0, GDONE, GDONE + granules)
  Atomics.store(c, DONE1, 0)
  Atomics.store(c, DONE2, 0)
  const open = (gen & TAG_MASK) << INDEX_BITS
  for (let t = 0; t < threads; t++) Atomics.store(c, HOME + t, open | (t * homes))
  Atomics.store(c, NEXT1, open) // seq-cst: publishes every field above to the claimers
  Atomics.store(c, NEXT2, open)
  return granules
}
