// Types of protocol.mjs (see there for the protocol).

/** The kernel exports a thread runs (assembly/threads.ts). */
export interface PartExports {
  shrinkTasks(dtype: number, x: number, inF: number, rows: number, segs: number, slots: number, numSlices: number,
    h: number, hRow: number, tasks: number, numTasks: number): void
  expandColumns(dtype: number, h: number, hRow: number, y: number, outF: number, rows: number, segs: number,
    numSeg: number, slots: number, widths: number, numSlices: number, c0: number, c1: number): void
}

type Post = (message: unknown) => void

export const QUIT: number
export const GEN: number
export const GRANULES: number
export const NEXT1: number
export const NEXT2: number
export const DONE1: number
export const DONE2: number
export const GO2: number
export const DONE: number
export const ERROR: number
export const BY_MESSAGE: number
export const ARG: number
export const A_DTYPE: number
export const A_X: number
export const A_INF: number
export const A_ROWS: number
export const A_SEGS: number
export const A_NUMSEG: number
export const A_SLOTS: number
export const A_NSLICES: number
export const A_H: number
export const A_HROW: number
export const A_TASKS: number
export const A_Y: number
export const A_OUTF: number
export const A_WIDTHS: number
export const MAX_WORKERS: number
export const WAKE: number
export const GRANULES_PER_THREAD: number
export const PART: number
export const TASK_FIELDS: number
export const CTRL_INTS: number
export const INDEX_BITS: number
export const TAG_MASK: number
export const NO_CLAIMS: number

export function finish(ctrl: Int32Array, counter: number, total: number, flag: number, gen: number, post?: Post): void
export function claimShrink(ctrl: Int32Array, ex: PartExports, gen: number, post?: Post): void
export function claimExpand(ctrl: Int32Array, ex: PartExports, gen: number, post?: Post): void
export function workerLoop(ctrl: Int32Array, ex: PartExports, w: number, post: Post): void
