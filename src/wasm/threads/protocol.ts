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
  BY_MESSAGE,
  DONE,
  DONE1,
  DONE2,
  ERROR,
  GDONE,
  GEN,
  GO2,
  GRANULES,
  HELPERS,
  MODE,
  MODE_FUSED,
  NEXT1,
  NEXT2,
  PART,
  type PartExports,
  type Post,
  QUIT,
  SLEEP,
  TAG_MASK,
  TASK_FIELDS,
  WAKE,
  XIN,
  YIN,
} from './control.js'
import { claim, claimFusedNext } from './claims.js'
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
/**
 * The main thread, waiting for the workers' last granules (pool.ts until), in jobs with at least
 * SPIN_MAIN_MIN_WORKERS workers and a core for each of them besides the main thread's: short, and
 * not where a worker may need the main thread's core.
 */
export const SPIN_MAIN_MS = 0.1
export const SPIN_MAIN_MIN_WORKERS = 3

/** Spin until ctrl[i] != v, QUIT, or `ms` elapsed; returns ctrl[i]. */
export function spinWhile(ctrl: Int32Array, i: number, v: number, ms: number): number {
  const end = performance.now() + ms
  for (;;) {
    for (let k = 0; k < 100; k++) {
      const x = Atomics.load(ctrl, i)
      if (x !== v) return x
    }
    if (Atomics.load(ctrl, QUIT) === 1 || performance.now() > end) return Atomics.load(ctrl, i)
  }
}

/**
 * Fused: claim granules of job `gen` until none is left, as thread `self` (worker index, or HELPERS
 * for the main thread); `after` runs after each granule.
 */
export function claimFused(ctrl: Int32Array, ex: PartExports, gen: number, self: number, post?: Post, after?: () => void): void {
  const tag = gen & TAG_MASK
  for (let i = claimFusedNext(ctrl, tag, self); i >= 0; i = claimFusedNext(ctrl, tag, self)) {
    try {
      const p = PART + 4 * i
      if (ctrl[p + 1] > 0) {
        const tasks = ctrl[A_TASKS] + ctrl[p] * TASK_FIELDS * 4
        // the main thread may still be copying x in (layer.ts xByGranule): wait for the rows
        if (Atomics.load(ctrl, XIN) <= i && !waitAbove(ctrl, XIN, i)) continue
        const n = ctrl[p + 1]
        const fused = (shrink: number) =>
          ex.sgmvTasks(
            ctrl[A_DTYPE],
            ctrl[A_X],
            ctrl[A_INF],
            ctrl[A_ROWS],
            ctrl[A_SEGS],
            ctrl[A_SLOTS],
            ctrl[A_NSLICES],
            ctrl[A_H],
            ctrl[A_HROW],
            tasks,
            n,
            ctrl[A_Y],
            ctrl[A_OUTF],
            ctrl[A_WIDTHS],
            shrink,
          )
        if (Atomics.load(ctrl, YIN) > i) fused(1)
        else {
          // the main thread is still copying y in: shrink first, then wait for the rows
          const d = ctrl[A_DTYPE]
          ex.shrinkTasks(
            d,
            ctrl[A_X],
            ctrl[A_INF],
            ctrl[A_ROWS],
            ctrl[A_SEGS],
            ctrl[A_SLOTS],
            ctrl[A_NSLICES],
            ctrl[A_H],
            ctrl[A_HROW],
            tasks,
            n,
          )
          if (waitAbove(ctrl, YIN, i)) fused(0)
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
        claimFused(ctrl, ex, gen, w, post)
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
