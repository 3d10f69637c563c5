// The control block of the threaded wasm backend's jobs: one Int32Array over its own
// SharedArrayBuffer, shared by the main thread (pool.ts, job.ts) and the workers (protocol.ts,
// worker.ts); the word of each field, and the kernel exports a thread runs.
import { TASK_FIELDS } from '../records.js'

/** The kernel exports a thread runs (assembly/threads.ts). */
export interface PartExports {
  shrinkTasks(
    dtype: number,
    x: number,
    inF: number,
    rows: number,
    segs: number,
    slots: number,
    numSlices: number,
    h: number,
    hRow: number,
    tasks: number,
    numTasks: number,
  ): void
  expandColumns(
    dtype: number,
    h: number,
    hRow: number,
    y: number,
    outF: number,
    rows: number,
    segs: number,
    numSeg: number,
    slots: number,
    widths: number,
    numSlices: number,
    c0: number,
    c1: number,
  ): void
  /** Fused granules: shrink (unless `shrink` is 0) and expand whole entries of the tasks. */
  sgmvTasks(
    dtype: number,
    x: number,
    inF: number,
    rows: number,
    segs: number,
    slots: number,
    numSlices: number,
    h: number,
    hRow: number,
    tasks: number,
    numTasks: number,
    y: number,
    outF: number,
    widths: number,
    shrink: number,
  ): void
}

/** Posts a message to the main thread (a worker's port). */
export type Post = (message: unknown) => void

/** Control block fields (indices into the Int32Array). */
export const QUIT = 0 // 1: workers leave their loop
export const GEN = 1 // generation of the current job (wraps around)
export const GRANULES = 2 // granules of each phase in the current job
export const NEXT1 = 3 // next shrink granule: tag << INDEX_BITS | index
export const NEXT2 = 4 // next expand granule, same packing
export const DONE1 = 5 // shrink units done (granules, plus 1 for the main thread's copy of y)
export const DONE2 = 6 // expand granules done
export const GO2 = 7 // = GEN once the shrink is done
export const DONE = 8 // = GEN once the expand is done
export const ERROR = 9 // 1: a worker threw (its message is posted)
export const BY_MESSAGE = 10 // 1: the main thread waits for messages, not Atomics.waitAsync
// kernel arguments (byte addresses into the shared linear memory, sizes)
export const ARG = 16
export const A_DTYPE = ARG,
  A_X = ARG + 1,
  A_INF = ARG + 2,
  A_ROWS = ARG + 3,
  A_SEGS = ARG + 4,
  A_NUMSEG = ARG + 5
export const A_SLOTS = ARG + 6,
  A_NSLICES = ARG + 7,
  A_H = ARG + 8,
  A_HROW = ARG + 9,
  A_TASKS = ARG + 10
export const A_Y = ARG + 11,
  A_OUTF = ARG + 12,
  A_WIDTHS = ARG + 13
export const HELPERS = 11 // workers 0 .. HELPERS - 1 take part in the current job
export const MODE = 12 // MODE_PHASES or MODE_FUSED
export const YIN = 13 // fused: granules 0 .. YIN - 1 have their y rows in memory
export const XIN = 14 // fused: granules 0 .. XIN - 1 have their x rows in memory
export const HOMES = 15 // fused: 0, or granules per thread's home range (HOME)
/** Two phases with a barrier: shrink granules (H rows), then expand granules (y columns). */
export const MODE_PHASES = 0
/**
 * One adapter per token: each granule is a run of whole entries, shrunk and expanded by the
 * thread that claims it (no barrier). The main thread copies each granule's x rows in (XIN, or
 * all of x before the job), its y rows in (YIN) and out (once GDONE + i is set) while the threads
 * work.
 */
export const MODE_FUSED = 1
/** Most workers a pool may have; WAKE + w is worker w's wake word (bumped to start it). */
export const MAX_WORKERS = 63
export const WAKE = 32
/** SLEEP + w: 1 while worker w sleeps (or is about to) in Atomics.wait; 0 while it spins or works. */
export const SLEEP = WAKE + MAX_WORKERS + 1
/** Granules per thread (more: finer balance, more claims). */
export const GRANULES_PER_THREAD = 16
/** Per granule i: PART + 4i .. + 3 = first task, task count, first column, end column. */
export const PART = SLEEP + MAX_WORKERS + 1
export { TASK_FIELDS }
/** Most granules per phase. */
export const MAX_GRANULES = GRANULES_PER_THREAD * (MAX_WORKERS + 1)
/** GDONE + i: 1 once fused granule i is done. */
export const GDONE = PART + 4 * MAX_GRANULES
/**
 * HOME + t: claim counter of thread t's home range, granules t * HOMES .. (t + 1) * HOMES - 1
 * (thread t = worker t, the main thread after the HELPERS workers), packed as NEXT1. A thread
 * claims its own range first, then takes what is left of the others' (in order after its own).
 */
export const HOME = GDONE + MAX_GRANULES
export const CTRL_INTS = HOME + MAX_WORKERS + 1
/** Claim counters: low INDEX_BITS = next granule, the bits above = the job's tag (GEN & TAG_MASK). */
export const INDEX_BITS = 11
export const TAG_MASK = (1 << 20) - 1
/** A claim counter that matches no tag (between two jobs). */
export const NO_CLAIMS = -1
