// The job protocol of the threaded wasm backend, shared by the main thread (pool.ts) and the
// workers (worker.ts).
//
// One control block (Int32Array over its own SharedArrayBuffer) describes the current job. A call
// runs in two phases (assembly/threads.ts), each cut into granules before the job (several per
// thread, split.ts), or, with one adapter per token, in one phase of fused granules (MODE_FUSED).
// The main thread and the workers it woke claim granules with an atomic counter until none is
// left; results do not depend on which thread ran which.
// A phase ends when all its granules are done, not when every thread has arrived: whoever
// finishes the last granule publishes the job's generation (GO2 after the shrink, DONE after the
// expand) and notifies. So a worker that wakes late (busy machine) finds nothing left and does
// not hold the call up. Claims carry the job's generation (a tag in the counter), so a late worker
// can never claim work of a later job by mistake. Workers spin for a while after a job (and after
// a wake request, sent before the main thread prepares a job), then sleep in Atomics.wait; the
// main thread never blocks: it awaits Atomics.waitAsync (or, where that is missing, a message
// posted by the publishing worker).
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
/** Two phases with a barrier: shrink granules (H rows), then expand granules (y columns). */
export const MODE_PHASES = 0
/**
 * One adapter per token: each granule is a run of whole entries, shrunk and expanded by the
 * thread that claims it (no barrier). The main thread copies each granule's x rows in (XIN, or
 * all of x before the job), its y rows in (YIN) and out (once GDONE + i is set) while the threads
 * work.
 */
export const MODE_FUSED = 1
/** Kernel dtype flags of a fused granule (assembly/threads.ts FUSED, EXPAND_ONLY). */
export const FUSED = 4
export const EXPAND_ONLY = 8
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
export const CTRL_INTS = GDONE + MAX_GRANULES
/** Claim counters: low INDEX_BITS = next granule, the bits above = the job's tag (GEN & TAG_MASK). */
export const INDEX_BITS = 11
export const TAG_MASK = (1 << 20) - 1
/** A claim counter that matches no tag (between two jobs). */
export const NO_CLAIMS = -1

/** Claim the next granule of counter `word` for the job tagged `tag`; -1 when none is left. */
function claim(ctrl: Int32Array, word: number, tag: number): number {
  for (;;) {
    const v = Atomics.load(ctrl, word)
    if (v >>> INDEX_BITS !== tag) return -1
    const i = v & ((1 << INDEX_BITS) - 1)
    if (i >= ctrl[GRANULES]) return -1
    if (Atomics.compareExchange(ctrl, word, v, v + 1) === v) return i
  }
}

/** Count one unit of a phase done; the last of `total` publishes `gen` in `flag`. */
export function finish(ctrl: Int32Array, counter: number, total: number, flag: number, gen: number, post?: Post): void {
  if (Atomics.add(ctrl, counter, 1) !== total - 1) return
  Atomics.store(ctrl, flag, gen)
  Atomics.notify(ctrl, flag)
  if (post && Atomics.load(ctrl, BY_MESSAGE) === 1) post(flag)
}

/** Shrink: claim granules of job `gen` until none is left. */
export function claimShrink(ctrl: Int32Array, ex: PartExports, gen: number, post?: Post): void {
  for (let i = claim(ctrl, NEXT1, gen & TAG_MASK); i >= 0; i = claim(ctrl, NEXT1, gen & TAG_MASK)) {
    try {
      const p = PART + 4 * i
      if (ctrl[p + 1] > 0) {
        ex.shrinkTasks(
          ctrl[A_DTYPE],
          ctrl[A_X],
          ctrl[A_INF],
          ctrl[A_ROWS],
          ctrl[A_SEGS],
          ctrl[A_SLOTS],
          ctrl[A_NSLICES],
          ctrl[A_H],
          ctrl[A_HROW],
          ctrl[A_TASKS] + ctrl[p] * TASK_FIELDS * 4,
          ctrl[p + 1],
        )
      }
    } finally {
      finish(ctrl, DONE1, ctrl[GRANULES] + 1, GO2, gen, post)
    }
  }
}

/** Expand: claim column ranges of job `gen` until none is left. */
export function claimExpand(ctrl: Int32Array, ex: PartExports, gen: number, post?: Post): void {
  for (let i = claim(ctrl, NEXT2, gen & TAG_MASK); i >= 0; i = claim(ctrl, NEXT2, gen & TAG_MASK)) {
    try {
      const p = PART + 4 * i
      if (ctrl[p + 2] < ctrl[p + 3]) {
        ex.expandColumns(
          ctrl[A_DTYPE],
          ctrl[A_H],
          ctrl[A_HROW],
          ctrl[A_Y],
          ctrl[A_OUTF],
          ctrl[A_ROWS],
          ctrl[A_SEGS],
          ctrl[A_NUMSEG],
          ctrl[A_SLOTS],
          ctrl[A_WIDTHS],
          ctrl[A_NSLICES],
          ctrl[p + 2],
          ctrl[p + 3],
        )
      }
    } finally {
      finish(ctrl, DONE2, ctrl[GRANULES], DONE, gen, post)
    }
  }
}

/**
 * How long a worker spins (Atomics.load in a loop) before it sleeps in Atomics.wait: waking a
 * sleeping thread costs 50-100 us here (2 vCPUs), a spinning one sees the change at once.
 * After a job: calls often come back to back (every layer of a model in turn).
 * After a wake request: the main thread is preparing a job (copying x), which can take ms.
 * At the barrier between the phases, or waiting for the main thread's copies of y rows (fused).
 * Bounded, so that on a loaded machine a waiting worker does not keep a core from the main thread
 * for long.
 */
export const SPIN_IDLE_MS = 0.3
export const SPIN_WOKEN_MS = 5
export const SPIN_BARRIER_MS = 5

/** Spin until ctrl[i] != v, QUIT, or `ms` elapsed; returns ctrl[i]. */
function spinWhile(ctrl: Int32Array, i: number, v: number, ms: number): number {
  const end = performance.now() + ms
  for (;;) {
    for (let k = 0; k < 100; k++) {
      const x = Atomics.load(ctrl, i)
      if (x !== v) return x
    }
    if (Atomics.load(ctrl, QUIT) === 1 || performance.now() > end) return Atomics.load(ctrl, i)
  }
}

/** Fused: claim granules of job `gen` until none is left; `after` runs after each granule. */
export function claimFused(ctrl: Int32Array, ex: PartExports, gen: number, post?: Post, after?: () => void): void {
  for (let i = claim(ctrl, NEXT1, gen & TAG_MASK); i >= 0; i = claim(ctrl, NEXT1, gen & TAG_MASK)) {
    try {
      const p = PART + 4 * i
      if (ctrl[p + 1] > 0) {
        const tasks = ctrl[A_TASKS] + ctrl[p] * TASK_FIELDS * 4
        // the main thread may still be copying x in (backend.ts TUNING.xByGranule): wait for the rows
        if (Atomics.load(ctrl, XIN) <= i && !waitAbove(ctrl, XIN, i)) continue
        const run = (flags: number) =>
          ex.shrinkTasks(
            ctrl[A_DTYPE] + flags,
            ctrl[A_X],
            ctrl[A_INF],
            ctrl[A_ROWS],
            ctrl[A_SEGS],
            ctrl[A_SLOTS],
            ctrl[A_NSLICES],
            ctrl[A_H],
            ctrl[A_HROW],
            tasks,
            ctrl[p + 1],
          )
        if (Atomics.load(ctrl, YIN) > i) run(FUSED)
        else {
          // the main thread is still copying y in: shrink first, then wait for the rows
          run(0)
          if (waitAbove(ctrl, YIN, i)) run(EXPAND_ONLY)
        }
      }
    } finally {
      Atomics.store(ctrl, GDONE + i, 1)
      finish(ctrl, DONE2, ctrl[GRANULES], DONE, gen, post)
    }
    after?.()
  }
}

/** Block (spin, then sleep in short waits) until ctrl[i] > v (true) or QUIT (false). */
function waitAbove(ctrl: Int32Array, i: number, v: number): boolean {
  for (let x = Atomics.load(ctrl, i); x <= v; x = Atomics.load(ctrl, i)) {
    if (Atomics.load(ctrl, QUIT) === 1) return false
    if (spinWhile(ctrl, i, x, SPIN_BARRIER_MS) === x) Atomics.wait(ctrl, i, x, 1)
  }
  return true
}

/**
 * Ask worker w to start spinning (a job follows soon): bump its wake word, and notify it only if
 * it sleeps. Seq-cst both sides: the worker sets SLEEP before it compares the wake word in
 * Atomics.wait, the main thread bumps the word before it reads SLEEP, so one of them sees the other.
 */
export function wakeWorker(ctrl: Int32Array, w: number): void {
  Atomics.add(ctrl, WAKE + w, 1)
  if (Atomics.load(ctrl, SLEEP + w) === 1) Atomics.notify(ctrl, WAKE + w, 1)
}

/**
 * Once a job is published (GEN stored): wake worker w if it sleeps. The worker sets SLEEP before
 * it reads GEN a last time, the main thread stores GEN before it reads SLEEP: a worker that this
 * does not wake sees the new GEN. Spinning workers are left alone (no stale wake request).
 */
export function wakeIfSleeping(ctrl: Int32Array, w: number): void {
  if (Atomics.load(ctrl, SLEEP + w) !== 1) return
  Atomics.add(ctrl, WAKE + w, 1)
  Atomics.notify(ctrl, WAKE + w, 1)
}

/**
 * Worker w's loop: wait for a job (a new GEN), spinning for a while and then sleeping until
 * woken, help with it if it is one of the job's HELPERS, repeat until QUIT.
 */
export function workerLoop(ctrl: Int32Array, ex: PartExports, w: number, post: Post): void {
  let last = Atomics.load(ctrl, GEN)
  let handled = Atomics.load(ctrl, WAKE + w)
  for (;;) {
    let gen = spinWhile(ctrl, GEN, last, SPIN_IDLE_MS)
    while (gen === last) {
      if (Atomics.load(ctrl, QUIT) === 1) return
      const seen = Atomics.load(ctrl, WAKE + w)
      if (seen === handled) {
        Atomics.store(ctrl, SLEEP + w, 1)
        if (Atomics.load(ctrl, GEN) === last && Atomics.load(ctrl, QUIT) === 0) Atomics.wait(ctrl, WAKE + w, seen)
        Atomics.store(ctrl, SLEEP + w, 0)
        if (Atomics.load(ctrl, QUIT) === 1) return
      }
      handled = Atomics.load(ctrl, WAKE + w)
      gen = spinWhile(ctrl, GEN, last, SPIN_WOKEN_MS)
    }
    last = gen
    handled = Atomics.load(ctrl, WAKE + w) // the requests so far were for this job
    if (w >= Atomics.load(ctrl, HELPERS)) continue
    try {
      if (Atomics.load(ctrl, MODE) === MODE_FUSED) {
        claimFused(ctrl, ex, gen, post)
        continue
      }
      claimShrink(ctrl, ex, gen, post)
      // the expand needs every H row: wait for the end of this job's shrink (or of the job)
      let v = Atomics.load(ctrl, GO2)
      if (v !== gen) v = spinWhile(ctrl, GO2, v, SPIN_BARRIER_MS)
      for (; v !== gen; v = Atomics.load(ctrl, GO2)) {
        if (Atomics.load(ctrl, QUIT) === 1) return
        if (Atomics.load(ctrl, GEN) !== gen) break
        Atomics.wait(ctrl, GO2, v)
      }
      if (Atomics.load(ctrl, GO2) === gen) claimExpand(ctrl, ex, gen, post)
    } catch (e) {
      Atomics.store(ctrl, ERROR, 1)
      post({ error: e instanceof Error && e.stack ? e.stack : String(e) })
    }
  }
}
