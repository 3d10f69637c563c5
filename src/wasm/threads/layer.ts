/**
 * A layer of the threaded wasm backend: the single-threaded layer's weights, with each call cut
 * into granules (split.ts) that the main thread and the workers claim (pool.ts). With one adapter
 * per token a granule is a run of whole entries, shrunk and expanded by one thread, and the main
 * thread copies x and y rows in and y rows out per granule while the threads work (copies.ts);
 * otherwise the call runs in two phases (shrink by H rows, expand by y columns).
 */
import type { BackendLayer } from '../../backend.js'
import type { SegmentPlan } from '../../metadata.js'
import type { LayerSpec, PreparedAdapter } from '../../types.js'
import type { WasmBackend, WasmLayer } from '../backend.js'
import { align16, DTYPE_CODE, SEGMENT_BYTES, SLOT_BYTES, writeSegments } from '../records.js'
import { GRANULES_PER_THREAD } from './control.js'
import { fusedCopies } from './copies.js'
import type { JobCopies } from './job.js'
import type { WorkerPool } from './pool.js'
import { granuleShares, homeShares, splitColumns, splitShrink } from './split.js'

/**
 * Guided granule sizes (split.ts granuleShares): each granule 1/(4 threads) of the work left, so
 * that the threads finish a phase close together.
 */
const GSS_DIVISOR = 4
/**
 * Segments of at most this many entries (few tokens per weight read: the weights' traffic
 * dominates) stay whole up to half a thread's share, so that one thread reads their A and B.
 */
const WHOLE_ENTRIES = 16
/**
 * Fused calls with x and y in place (no copies whose order the threads must follow), on
 * HOME_MIN_PARTS threads or more: each thread gets a home range of contiguous entries, cut in
 * HOME_GRANULES granules of decreasing size, claimed by its owner first and by the others once
 * their own range is done (protocol.ts). With one claim counter, the granules of one segment went
 * to every thread in turn, so each thread pulled the weights of several adapters through its
 * cache instead of one or two.
 */
const HOME_GRANULES = 4
const HOME_MIN_PARTS = 4

/** What a threaded layer asks of its backend: the pool, and the order and size of its calls. */
export interface CallScheduler {
  readonly pool: WorkerPool | null
  /** Whether a call is running or queued (they share the scratch area and the pool). */
  readonly busy: boolean
  partsFor(work: number, fusedEntries: number, copies: boolean): number
  /** 'auto': run this call on one thread, the workers having been starved lately. */
  takeSolo(): boolean
  /** After a threaded call of `total` ms in which the main thread waited `waited` ms. */
  settle(waited: number, total: number): void
  /** Run calls one at a time, in order. */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T>
}

/** A layer of the single-threaded backend whose calls are cut into parts over the backend's threads. */
export class ThreadedWasmLayer implements BackendLayer {
  private readonly spec: LayerSpec
  private readonly backend: WasmBackend
  private readonly slotTable: number
  private readonly widths: number

  constructor(
    private readonly threaded: CallScheduler,
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
    for (let g = 0; g < plan.segSlot.length; g++) rankEntries += plan.segLength[g] * i32[table + plan.segSlot[g] * (SLOT_BYTES >> 2)]
    const work = rankEntries * (this.spec.inFeatures * this.spec.sliceWidths.length + this.spec.outFeatures)
    const host = this.backend.hostMemory
    const copies = host.addressOf(x) < 0 || host.addressOf(y) < 0
    let parts = this.threaded.partsFor(work, plan.adaptersPerToken === 1 ? plan.rows.length : 0, copies)
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

  /** [numSeg] rank of each segment's slot, from the slot table (records.ts SLOT_BYTES per slot, rank first). */
  private segmentRanks(plan: SegmentPlan): Int32Array {
    const i32 = this.backend.memory.i32
    const ranks = new Int32Array(plan.segSlot.length)
    for (let g = 0; g < ranks.length; g++) ranks[g] = i32[(this.slotTable >> 2) + plan.segSlot[g] * (SLOT_BYTES >> 2)]
    return ranks
  }

  private async applyParts(x: Float32Array, y: Float32Array, plan: SegmentPlan, ranks: Int32Array, parts: number): Promise<void> {
    const t0 = performance.now()
    const pool = this.threaded.pool!
    pool.wake(parts) // the workers' wake-up overlaps the preparation below
    const { spec } = this
    const S = spec.sliceWidths.length
    const T = plan.numTokens
    const outF = spec.outFeatures
    const N = plan.rows.length
    const numSeg = plan.segSlot.length
    const hRow = S * spec.maxRank
    // one adapter per token and an entry per thread: granules of whole entries, no barrier (protocol.ts)
    const fused = plan.adaptersPerToken === 1 && N >= parts
    // host arrays (runtime.hostArray) are used in place: nothing to copy in or out for them
    const xAt = this.backend.hostMemory.addressOf(x)
    const yAt = this.backend.hostMemory.addressOf(y)
    const homes = fused && xAt >= 0 && yAt >= 0 && parts >= HOME_MIN_PARTS ? HOME_GRANULES : 0
    const count = homes > 0 ? parts * homes : parts * GRANULES_PER_THREAD
    // claimed dynamically (protocol.ts): guided sizes, or per home range sizes homes, .., 2, 1
    const shares = homes > 0 ? homeShares(parts, homes) : granuleShares(parts, count, GSS_DIVISOR)
    // short segments stay whole up to half a thread's share; with longer ones (the arithmetic
    // dominates) only segments below the smallest granule stay whole (split.ts)
    let longest = 0
    for (let g = 0; g < numSeg; g++) longest = Math.max(longest, plan.segLength[g])
    const wholeUpTo = longest <= WHOLE_ENTRIES ? 1 / (2 * parts) : 1 / (4 * count)
    const { tasks, partStart } = splitShrink(plan, ranks, S, shares, wholeUpTo, !fused)
    const cuts = splitColumns(spec.sliceWidths, shares)
    // one work area: x | y | rows | segments | tasks | H (the whole call's, see assembly/threads.ts)
    const xBytes = xAt >= 0 ? 0 : align16(T * spec.inFeatures * 4)
    const yBytes = yAt >= 0 ? 0 : align16(T * outF * 4)
    const rowsBytes = align16(N * 4)
    const segBytes = align16(numSeg * SEGMENT_BYTES)
    const taskBytes = align16(tasks.length * 4)
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
    // fused: x is copied in granule by granule while the threads work (a worker starts on its
    // granule before all of x is in: 1.04-1.15x at T >= 64 on 2 threads, copies.ts)
    const xByGranule = fused && xAt < 0
    if (!xByGranule && xAt < 0) f32.set(x, xp >> 2)
    const i32 = mem.i32
    i32.set(plan.rows, rp >> 2)
    writeSegments(i32, sp, plan)
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
      homes,
    }
    const y0 = yp >> 2
    const none = () => {}
    const copies: JobCopies = fused
      ? fusedCopies({ plan, tasks, partStart, f32, x, y, x0: xp >> 2, y0, inF: spec.inFeatures, outF, yInPlace: yAt >= 0, xByGranule })
      : // phases: y is first read in the expand phase: copied in while the workers run their shrink tasks
        { beforeShrink: yAt >= 0 ? none : () => f32.set(y, y0), copyXIn: none, copyIn: none, copyOut: none }
    await pool.run(job, parts, copies)
    if (!fused && yAt < 0) y.set(f32.subarray(y0, y0 + T * outF))
    this.threaded.settle(pool.waited, performance.now() - t0)
  }
}
