/**
 * The multi-threaded wasm backend: the single-threaded backend's layers and weights, in a shared
 * memory, with each call cut into granules (split.ts) claimed by the main thread and a worker pool
 * (pool.ts, protocol.ts). With one adapter per token a granule is a run of whole entries, shrunk
 * and expanded by one thread, and the main thread copies x and y rows in and y rows out per
 * granule while the threads work; otherwise the call runs in two phases (shrink by H rows, expand by y columns).
 * Where threads are unavailable it is the single-threaded backend, with the reason.
 */
import { type Backend, type BackendLayer, CHUNK_SIZE } from '../../backend.js'
import type { SegmentPlan } from '../../metadata.js'
import type { LayerSpec, PreparedAdapter } from '../../types.js'
import { createWasmBackend, WasmBackend, type WasmLayer } from '../backend.js'
import type { WasmModuleOptions, WasmVariant } from '../loader.js'
import { loadThreadsModule, type ThreadsModuleOptions } from './loader.js'
import { WorkerPool } from './pool.js'
import { GRANULES_PER_THREAD, type PartExports, TASK_FIELDS } from './protocol.js'
import { granuleShares, splitColumns, splitShrink } from './split.js'
import { machineThreads, threadsUnavailableReason, type ThreadsOption } from './support.js'
import { DEFAULT_WORKER_URL } from './workers.js'
import { align16, DTYPE_CODE, SEGMENT_BYTES, writeSegments } from '../records.js'

/** Options of the threaded backend beyond the single-threaded ones. */
export interface ThreadedWasmOptions extends WasmModuleOptions, ThreadsModuleOptions {
  /** URL of the worker entry (default: worker.js / worker.ts next to this module). */
  workerUrl?: URL
}

/** Most threads 'auto' starts: the kernels are bound by memory bandwidth well before that. */
export const AUTO_MAX_THREADS = 16
/**
 * Multiply-adds per thread below which a call uses fewer threads, whatever the pool size (a call
 * of W multiply-adds runs on min(threads, floor(W / this)) threads; `threadsMinWork` overrides it). Measured with bench/threads.ts and
 * A/B runs on the 2-core development machine: with fused granules (one adapter per token, at least
 * two entries) 2 threads break even near 0.3 M multiply-adds (o 4096x4096 r16, T = 2: 0.98x) and
 * win from about 0.5 M (down r16 T = 2: 1.14x, qkv r16 T = 2: 1.3x); a call that needs the two
 * phases (one token, or several adapters per token) pays a barrier more: 2 threads at T = 1 were
 * 0.64-1.05x up to 0.5 M (o r16 .. o r64). A machine-specific figure: the dispatcher's calibration
 * should learn it.
 */
export const AUTO_WORK_PER_THREAD = 400_000
/** The same for calls run in two phases (protocol.ts MODE_PHASES). */
export const AUTO_WORK_PER_THREAD_PHASES = 1_000_000

/**
 * 'auto' on a loaded machine: a threaded call in which the main thread waited for the workers
 * more than STARVED_SHARE of its time (and more than STARVED_MS: a scheduler slice, not the usual
 * end of a call) means the workers did not get a core; after two such calls in a row, the next
 * SOLO_CALLS calls run on one thread, then threads are tried again.
 */
export const STARVED_SHARE = 0.3
export const STARVED_MS = 0.2
export const SOLO_CALLS = 16

/**
 * Switches of the threaded calls (every setting gives the same bits: test/threads-modes.test.ts),
 * kept to A/B them against each other in one process: wake the workers before preparing a job;
 * guided granule sizes (split.ts granuleShares, with gssDivisor) instead of equal ones; fused
 * granules (protocol.ts MODE_FUSED) for calls with one adapter per token and at least
 * fusedMinEntries entries per thread; segments of at most wholeEntries entries kept whole; fused,
 * x copied in granule by granule while the threads work (xByGranule; a worker's granule waits for
 * its rows, protocol.ts XIN) instead of all of it before the job: A/B with tokens in runs of one
 * adapter (as requests are), 2 threads: down 11008x4096 r16 1.07x / 1.13x / 1.15x at T = 64 / 256 /
 * 1024, o 4096x4096 r16 1.04x / 1.06x / 1.10x, qkv r16 1.04x at T >= 256; with adapters round-robin
 * over the tokens (bench/threads.ts) the first granule's rows span all of x: 0.99-1.03x. ySpan:
 * fused, each granule copies in the y rows of its span not yet copied (copySpan), not only its own
 * rows: with adapters round-robin, 1.02-1.05x at T >= 256 (fewer, larger copies), 0.96-1.03x at
 * T = 64; with tokens in runs, 0.99-1.03x. xOwnFirst: the first granule's x rows alone first
 * (then spans), so that a worker starts before most of x is copied: adapters round-robin, down r16
 * 0.99x / 1.05x / 1.03x at T = 64 / 256 / 1024, o r16 1.03x / 1.03x / 1.01x, qkv r16 0.99x / 1.04x
 * / 1.01x; tokens in runs 1.00x.
 */
export const TUNING = {
  wakeEarly: true,
  guided: true,
  gssDivisor: 4,
  fused: true,
  fusedMinEntries: 1,
  wholeEntries: 16,
  xByGranule: true,
  ySpan: true,
  xOwnFirst: true,
}

export type { ThreadsOption }

/**
 * The single-threaded backend's storage (its module, memory, layers and scratch), with calls cut
 * over a worker pool.
 */
export class ThreadedWasmBackend implements Backend {
  readonly name = 'wasm' as const
  readonly chunkSize = CHUNK_SIZE
  readonly isSoftware = false
  readonly lost = false
  readonly device = null
  readonly transfers = null
  readonly kernels = null
  private queue: Promise<unknown> = Promise.resolve()
  private pending = 0
  private solo = 0 // calls left on one thread (takeSolo)
  private strikes = 0 // threaded calls in a row that starved (settle)
  private forced: number | null = null // forceParts

  /**
   * @param wasm     the single-threaded backend whose storage the calls use (a shared memory when `pool` is set)
   * @param pool     the workers (null: single-threaded)
   * @param mode     'auto' (threads per call from its size) or a fixed count for every call
   * @param threadsUnavailableReason why no pool runs here, when none does
   * @param minWork multiply-adds per thread below which a call uses fewer threads (null: the
   *   AUTO_WORK_PER_THREAD figures; 0: every call on every thread)
   */
  constructor(
    readonly wasm: WasmBackend,
    readonly pool: WorkerPool | null,
    readonly mode: ThreadsOption,
    readonly threadsUnavailableReason: string | null,
    readonly minWork: number | null = null,
  ) {}

  /** Which build of the kernels runs (relaxed SIMD or plain). */
  get variant(): WasmVariant {
    return this.wasm.variant
  }

  /** The storage of the wasm backend: its memory and kernels. */
  get memory(): WasmBackend['memory'] {
    return this.wasm.memory
  }

  get exports(): WasmBackend['exports'] {
    return this.wasm.exports
  }

  /** The wasm backend's host arrays (rt.hostArray), in the shared memory. */
  get hostMemory(): WasmBackend['hostMemory'] {
    return this.wasm.hostMemory
  }

  /** Threads a call may use (1 without a pool). */
  get threads(): number {
    return this.pool ? this.pool.size + 1 : 1
  }

  createLayer(spec: LayerSpec): BackendLayer {
    return new ThreadedWasmLayer(this, this.wasm.createLayer(spec))
  }

  settled(): Promise<void> {
    return this.queue.then(() => {})
  }

  /**
   * Threads for a call of `work` multiply-adds; `fusedEntries`: its entries when it can run fused
   * granules (one adapter per token), else 0.
   */
  partsFor(work: number, fusedEntries = 0): number {
    if (!this.pool || this.pool.failed !== null) return 1
    if (this.forced !== null) return Math.min(this.forced, this.threads)
    // from the call's size, whatever the pool's: a call too small to gain stays on one thread
    if (this.minWork === 0) return this.threads
    const parts =
      fusedEntries >= 2
        ? Math.min(Math.floor(work / (this.minWork ?? AUTO_WORK_PER_THREAD)), fusedEntries)
        : Math.floor(work / (this.minWork ?? AUTO_WORK_PER_THREAD_PHASES))
    return Math.max(1, Math.min(this.threads, parts))
  }

  /**
   * 'auto': whether a call that would use threads runs on one thread instead, the workers having
   * been starved lately (STARVED_SHARE).
   */
  takeSolo(): boolean {
    if (this.mode !== 'auto' || this.forced !== null || this.solo === 0) return false
    this.solo--
    return true
  }

  /** After a threaded call of `total` ms in which the main thread waited `waited` ms for the workers. */
  settle(waited: number, total: number): void {
    if (this.mode !== 'auto') return
    if (waited > STARVED_MS && waited > STARVED_SHARE * total) {
      if (++this.strikes >= 2) {
        this.solo = SOLO_CALLS
        this.strikes = 0
      }
    } else this.strikes = 0
  }

  /**
   * Give every call `parts` threads (at most the pool's), whatever its size; null: back to the
   * mode's own choice. The calibration uses it to time one call on one thread and on all.
   */
  forceParts(parts: number | null): void {
    this.forced = parts === null ? null : Math.max(1, Math.floor(parts))
  }

  /** Whether a call is running or queued (they share the scratch area and the pool). */
  get busy(): boolean {
    return this.pending > 0
  }

  /** Run calls one at a time, in order; with none running, `fn` starts now (before this returns). */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const idle = this.pending === 0
    this.pending++
    const start = (): Promise<T> => {
      try {
        return Promise.resolve(fn())
      } catch (e) {
        return Promise.reject(e)
      }
    }
    const run = (idle ? start() : this.queue.then(fn)).finally(() => this.pending--)
    this.queue = run.catch(() => {})
    return run
  }

  dispose(): void {
    this.pool?.dispose()
    this.wasm.dispose()
  }
}

/** Create the backend with up to `threads` threads, or single-threaded where threads are unavailable. */
export async function createThreadedWasmBackend(
  threads: ThreadsOption,
  options: ThreadedWasmOptions = {},
  minWork: number | null = null,
): Promise<ThreadedWasmBackend> {
  const count = threads === 'auto' ? Math.min(AUTO_MAX_THREADS, await machineThreads()) : threads
  let reason = threadsUnavailableReason()
  if (reason === null && count > 1) {
    let pool: WorkerPool | null = null
    try {
      const m = await loadThreadsModule(options)
      pool = await WorkerPool.create(count - 1, m.module, m.memory, options.workerUrl ?? DEFAULT_WORKER_URL())
      return new ThreadedWasmBackend(new WasmBackend(m.exports, m.variant), pool, threads, null, minWork)
    } catch (e) {
      pool?.dispose()
      reason = e instanceof Error ? e.message : String(e)
    }
  }
  const single = await createWasmBackend(options)
  // more than one thread was asked for ('auto' included): say why there is one, when it is the runtime
  return new ThreadedWasmBackend(single, null, threads, threads !== 1 ? reason : null, minWork)
}

/** A layer of the single-threaded backend whose calls are cut into parts over the backend's threads. */
class ThreadedWasmLayer implements BackendLayer {
  private readonly spec: LayerSpec
  private readonly backend: WasmBackend
  private readonly slotTable: number
  private readonly widths: number

  constructor(
    private readonly threaded: ThreadedWasmBackend,
    private readonly single: WasmLayer,
  ) {
    this.spec = single.spec
    this.backend = single.backend
    this.slotTable = single.slotTable
    this.widths = single.widths
  }

  setAdapter(slot: number, adapter: PreparedAdapter): void {
    this.single.setAdapter(slot, adapter)
  }

  clearAdapter(slot: number): void {
    this.single.clearAdapter(slot)
  }

  dispose(): void {
    this.single.dispose()
  }

  apply(x: Float32Array, y: Float32Array, plan: SegmentPlan): void | Promise<void> {
    if (plan.rows.length === 0) return
    // multiply-adds of the call (no allocation: this runs before every single-threaded call too)
    const i32 = this.backend.memory.i32
    const table = this.slotTable >> 2
    let rankEntries = 0
    for (let g = 0; g < plan.segSlot.length; g++) rankEntries += plan.segLength[g] * i32[table + plan.segSlot[g] * 4]
    const work = rankEntries * (this.spec.inFeatures * this.spec.sliceWidths.length + this.spec.outFeatures)
    let parts = this.threaded.partsFor(work, plan.adaptersPerToken === 1 ? plan.rows.length : 0)
    if (parts > 1 && this.threaded.takeSolo()) parts = 1
    if (plan.weights || this.spec.embedding) parts = 1 // weights, gathers: the single-threaded kernels
    if (parts === 1 && !this.threaded.busy) return this.single.apply(x, y, plan)
    // x is the caller's again once this returns: a call that waits for the queue runs on a copy;
    // one that starts now copies all of x into the work area before its first await (pool.ts)
    const xNow = this.threaded.busy ? x.slice(0, plan.numTokens * this.spec.inFeatures) : x
    return this.threaded.exclusive(() =>
      parts === 1 ? this.single.apply(xNow, y, plan) : this.applyParts(xNow, y, plan, this.segmentRanks(plan), parts),
    )
  }

  /** [numSeg] rank of each segment's slot, from the slot table (assembly/sgmv.ts layout). */
  private segmentRanks(plan: SegmentPlan): Int32Array {
    const i32 = this.backend.memory.i32
    const ranks = new Int32Array(plan.segSlot.length)
    for (let g = 0; g < ranks.length; g++) ranks[g] = i32[(this.slotTable >> 2) + plan.segSlot[g] * 4]
    return ranks
  }

  private async applyParts(x: Float32Array, y: Float32Array, plan: SegmentPlan, ranks: Int32Array, parts: number): Promise<void> {
    const t0 = performance.now()
    const pool = this.threaded.pool!
    if (TUNING.wakeEarly) pool.wake(parts) // the workers' wake-up overlaps the preparation below
    const { spec } = this
    const S = spec.sliceWidths.length
    const T = plan.numTokens
    const outF = spec.outFeatures
    const N = plan.rows.length
    const numSeg = plan.segSlot.length
    const hRow = S * spec.maxRank
    // one adapter per token and enough entries: granules of whole entries, no barrier (protocol.ts)
    const fused = TUNING.fused && plan.adaptersPerToken === 1 && N >= TUNING.fusedMinEntries * parts
    const count = parts * GRANULES_PER_THREAD
    const shares = TUNING.guided ? granuleShares(parts, count, TUNING.gssDivisor) : new Array<number>(count).fill(1 / count) // claimed dynamically (protocol.ts)
    // Short segments (few tokens per weight read: the weights' traffic dominates) stay whole up to
    // half a thread's share, so that one thread reads their A and B; with longer ones (the
    // arithmetic dominates) only segments below the smallest granule stay whole (split.ts).
    let longest = 0
    for (let g = 0; g < numSeg; g++) longest = Math.max(longest, plan.segLength[g])
    const wholeUpTo = longest <= TUNING.wholeEntries ? 1 / (2 * parts) : 1 / (4 * count)
    const { tasks, partStart } = splitShrink(plan, ranks, S, shares, wholeUpTo, !fused)
    const cuts = splitColumns(spec.sliceWidths, shares)
    // host arrays (runtime.hostArray) are used in place: nothing to copy in or out for them
    const xAt = this.backend.hostMemory.addressOf(x)
    const yAt = this.backend.hostMemory.addressOf(y)
    // one work area: x | y | rows | segments | tasks + fused header | H (the whole call's, see assembly/threads.ts)
    const xBytes = xAt >= 0 ? 0 : align16(T * spec.inFeatures * 4)
    const yBytes = yAt >= 0 ? 0 : align16(T * outF * 4)
    const rowsBytes = align16(N * 4)
    const segBytes = align16(numSeg * SEGMENT_BYTES)
    const taskBytes = 16 + align16(tasks.length * 4)
    const base = this.backend.hostMemory.scratch(xBytes + yBytes + rowsBytes + segBytes + taskBytes + N * hRow * 4)
    const xs = base,
      ys = xs + xBytes,
      rp = ys + yBytes,
      sp = rp + rowsBytes,
      tp = sp + segBytes,
      hp = tp + taskBytes
    const xp = xAt >= 0 ? xAt : xs
    const yp = yAt >= 0 ? yAt : ys
    const mem = this.backend.memory
    const f32 = mem.f32
    // fused: x is copied in granule by granule while the threads work (pool.ts runFused)
    const xByGranule = fused && TUNING.xByGranule && xAt < 0
    if (!xByGranule && xAt < 0) f32.set(x, xp >> 2)
    const i32 = mem.i32
    i32.set(plan.rows, rp >> 2)
    writeSegments(i32, sp, plan)
    // the fused kernel's extra arguments, just before H (assembly/threads.ts shrinkTasks)
    i32[(hp >> 2) - 3] = yp
    i32[(hp >> 2) - 2] = outF
    i32[(hp >> 2) - 1] = this.widths
    i32.set(tasks, tp >> 2)
    const job = {
      dtype: DTYPE_CODE[spec.weightDtype],
      x: xp,
      inF: spec.inFeatures,
      rows: rp,
      segs: sp,
      numSeg,
      slots: this.slotTable,
      numSlices: S,
      h: hp,
      hRow,
      tasks: tp,
      y: yp,
      outF,
      widths: this.widths,
      partStart,
      cuts,
      fused,
      xByGranule,
    }
    const y0 = yp >> 2
    const x0 = xp >> 2
    const inF = spec.inFeatures
    const xDone = xByGranule ? new Uint8Array(T) : null! // fused: x rows copied in so far
    const yDone = fused && TUNING.ySpan && yAt < 0 ? new Uint8Array(T) : null! // fused: y rows copied in so far
    // fused: the y rows of each granule (entries are rows: one adapter per token), in runs of consecutive rows
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
    // the rows between the granule's first and last row not copied yet, in runs: few large copies
    // when a granule's rows are scattered (its span is then mostly copied at once); copying rows of
    // later granules early is harmless (their YIN / XIN come later)
    const copySpan = (gi: number, done: Uint8Array, src: Float32Array, width: number, at: number) => {
      let lo = T,
        hi = -1
      eachRun(gi, (r, n) => {
        lo = Math.min(lo, r)
        hi = Math.max(hi, r + n - 1)
      })
      copyRows(lo, hi - lo + 1, done, src, width, at)
    }
    // rows r .. r + n - 1 not copied yet, in runs
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
    const none = () => {}
    const yIn = yAt >= 0
    await pool.run(job, parts, this.backend.exports as unknown as PartExports, {
      // phases: y is first read in the expand phase: copied in while the workers run their shrink tasks
      beforeShrink: yIn ? none : () => f32.set(y, y0),
      copyXIn: (gi) => {
        // the first granule's own rows first: a worker starts on it while the rest of x is copied
        if (gi === 0 && TUNING.xOwnFirst) eachRun(0, (r, n) => copyRows(r, n, xDone, x, inF, x0))
        else copySpan(gi, xDone, x, inF, x0)
      },
      copyIn: yIn
        ? none
        : TUNING.ySpan
          ? (gi) => copySpan(gi, yDone, y, outF, y0)
          : (gi) => eachRun(gi, (r, n) => f32.set(y.subarray(r * outF, (r + n) * outF), y0 + r * outF)),
      copyOut: yIn ? none : (gi) => eachRun(gi, (r, n) => y.set(f32.subarray(y0 + r * outF, y0 + (r + n) * outF), r * outF)),
    })
    if (!fused && yAt < 0) y.set(f32.subarray(y0, y0 + T * outF))
    this.threaded.settle(pool.waited, performance.now() - t0)
  }
}
