// Types of protocol.mjs (see there for the protocol).

/** The kernel exports a part runs (assembly/threads.ts). */
export interface PartExports {
  shrinkTasks(dtype: number, x: number, inF: number, rows: number, segs: number, slots: number, numSlices: number,
    h: number, hRow: number, tasks: number, numTasks: number): void
  expandColumns(dtype: number, h: number, hRow: number, y: number, outF: number, rows: number, segs: number,
    numSeg: number, slots: number, widths: number, numSlices: number, c0: number, c1: number): void
}

export const QUIT: number
export const GEN: number
export const PARTS: number
export const GRANULES: number
export const NEXT1: number
export const NEXT2: number
export const ARRIVE1: number
export const GO2: number
export const ARRIVE2: number
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
export const PART: number
export const GRANULES_PER_THREAD: number
export const TASK_FIELDS: number
export const CTRL_INTS: number

export function claimShrink(ctrl: Int32Array, ex: PartExports): void
export function claimExpand(ctrl: Int32Array, ex: PartExports): void
export function arrive(ctrl: Int32Array, counter: number, flag: number, parts: number, gen: number,
  post?: (msg: unknown) => void): boolean
export function workerLoop(ctrl: Int32Array, ex: PartExports, w: number, post: (msg: unknown) => void): void
