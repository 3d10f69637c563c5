// The job protocol of the threaded wasm backend, shared by the main thread (pool.ts) and the
// workers (worker.mjs). Plain JavaScript so that the worker loads as is from src/ (tests, tsx)
// and from dist/; types in protocol.d.mts.
//
// One control block (Int32Array over its own SharedArrayBuffer) describes the current job. A call
// runs in two phases (assembly/threads.ts), each cut into granules (several per thread, split.ts).
// Every participating thread (the main thread and the workers woken) claims granules of the
// shrink with an atomic counter until none is left, meets the others at a barrier, claims expand
// column ranges the same way, and arrives at the end. Claiming balances the load when a thread
// is slow or descheduled; the granules are fixed before the job, so results do not depend on
// which thread ran which. The last thread to arrive at a barrier publishes the job's
// generation in the barrier's flag and notifies; workers sleep in Atomics.wait, the main thread
// awaits Atomics.waitAsync (or, where that is missing, a message posted by the last worker).

/** Control block fields (indices into the Int32Array). */
export const QUIT = 0 // 1: workers leave their loop
export const GEN = 1 // generation of the current job (wraps around)
export const PARTS = 2 // threads taking part in the current job (1 + workers woken)
export const GRANULES = 9 // granules of each phase in the current job
export const NEXT1 = 10 // next shrink granule to claim
export const NEXT2 = 11 // next expand granule to claim
export const ARRIVE1 = 3 // arrivals at the shrink -> expand barrier
export const GO2 = 4 // = GEN once every part finished its shrink tasks
export const ARRIVE2 = 5 // arrivals at the end
export const DONE = 6 // = GEN once every part finished its expand columns
export const ERROR = 7 // 1: a worker threw (its message is posted)
export const BY_MESSAGE = 8 // 1: the main thread waits for messages, not Atomics.waitAsync
// kernel arguments (byte addresses into the shared linear memory, sizes)
export const ARG = 16
export const A_DTYPE = ARG, A_X = ARG + 1, A_INF = ARG + 2, A_ROWS = ARG + 3, A_SEGS = ARG + 4, A_NUMSEG = ARG + 5
export const A_SLOTS = ARG + 6, A_NSLICES = ARG + 7, A_H = ARG + 8, A_HROW = ARG + 9, A_TASKS = ARG + 10
export const A_Y = ARG + 11, A_OUTF = ARG + 12, A_WIDTHS = ARG + 13
/** Most workers a pool may have; WAKE + w is worker w's wake word (set to GEN to start it). */
export const MAX_WORKERS = 63
export const WAKE = 32
/** Granules per thread (more: finer balance, more claims). */
export const GRANULES_PER_THREAD = 8
/** Per granule i: PART + 4i .. + 3 = first task, task count, first column, end column. */
export const PART = WAKE + MAX_WORKERS + 1
/** Fields per shrink task (assembly/threads.ts TASK_FIELDS). */
export const TASK_FIELDS = 5
export const CTRL_INTS = PART + 4 * GRANULES_PER_THREAD * (MAX_WORKERS + 1)

/** Phase 1: claim shrink granules until none is left. */
export function claimShrink(ctrl, ex) {
  const n = ctrl[GRANULES]
  for (let i = Atomics.add(ctrl, NEXT1, 1); i < n; i = Atomics.add(ctrl, NEXT1, 1)) runShrink(ctrl, ex, i)
}

/** Phase 2: claim expand granules until none is left. */
export function claimExpand(ctrl, ex) {
  const n = ctrl[GRANULES]
  for (let i = Atomics.add(ctrl, NEXT2, 1); i < n; i = Atomics.add(ctrl, NEXT2, 1)) runExpand(ctrl, ex, i)
}

/** Shrink granule `part`: its tasks. */
function runShrink(ctrl, ex, part) {
  const p = PART + 4 * part
  const count = ctrl[p + 1]
  if (count === 0) return
  ex.shrinkTasks(ctrl[A_DTYPE], ctrl[A_X], ctrl[A_INF], ctrl[A_ROWS], ctrl[A_SEGS], ctrl[A_SLOTS], ctrl[A_NSLICES],
    ctrl[A_H], ctrl[A_HROW], ctrl[A_TASKS] + ctrl[p] * TASK_FIELDS * 4, count)
}

/** Expand granule `part`: its output columns. */
function runExpand(ctrl, ex, part) {
  const p = PART + 4 * part
  if (ctrl[p + 2] >= ctrl[p + 3]) return
  ex.expandColumns(ctrl[A_DTYPE], ctrl[A_H], ctrl[A_HROW], ctrl[A_Y], ctrl[A_OUTF], ctrl[A_ROWS], ctrl[A_SEGS],
    ctrl[A_NUMSEG], ctrl[A_SLOTS], ctrl[A_WIDTHS], ctrl[A_NSLICES], ctrl[p + 2], ctrl[p + 3])
}

/**
 * Count one arrival at a barrier; the last of `parts` arrivals publishes `gen` in `flag` and
 * wakes the waiters (and posts `flag` when the main thread listens for messages).
 * Returns true for the last arrival.
 */
export function arrive(ctrl, counter, flag, parts, gen, post) {
  if (Atomics.add(ctrl, counter, 1) !== parts - 1) return false
  Atomics.store(ctrl, flag, gen)
  Atomics.notify(ctrl, flag)
  if (post && Atomics.load(ctrl, BY_MESSAGE) === 1) post(flag)
  return true
}

/** Worker w's loop: sleep until woken, run its part of the job, repeat until QUIT. */
export function workerLoop(ctrl, ex, w, post) {
  let seen = Atomics.load(ctrl, WAKE + w)
  const guard = (fn) => {
    try {
      fn()
    } catch (e) {
      Atomics.store(ctrl, ERROR, 1)
      post({ error: String(e && e.stack ? e.stack : e) })
    }
  }
  for (;;) {
    Atomics.wait(ctrl, WAKE + w, seen)
    if (Atomics.load(ctrl, QUIT) === 1) return
    const gen = Atomics.load(ctrl, WAKE + w)
    if (gen === seen) continue
    seen = gen
    const parts = ctrl[PARTS]
    guard(() => claimShrink(ctrl, ex))
    if (!arrive(ctrl, ARRIVE1, GO2, parts, gen, post)) {
      for (let v = Atomics.load(ctrl, GO2); v !== gen; v = Atomics.load(ctrl, GO2)) {
        if (Atomics.load(ctrl, QUIT) === 1) return
        Atomics.wait(ctrl, GO2, v)
      }
    }
    guard(() => claimExpand(ctrl, ex))
    arrive(ctrl, ARRIVE2, DONE, parts, gen, post)
  }
}
