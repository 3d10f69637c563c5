/**
 * The multi-threaded wasm backend: the single-threaded backend's storage (its module, memory,
 * layers and scratch) in a shared memory, with each call of a large enough size cut over a worker
 * pool (layer.ts, pool.ts). Where threads are unavailable it is the single-threaded backend, with
 * the reason.
 */
import { type Backend, type BackendLayer, CHUNK_SIZE } from '../../backend.js'
import type { LayerSpec } from '../../types.js'
import { createWasmBackend, WasmBackend } from '../backend.js'
import type { WasmModuleOptions, WasmVariant } from '../loader.js'
import { type CallScheduler, ThreadedWasmLayer } from './layer.js'
import { loadThreadsModule, type ThreadsModuleOptions } from './loader.js'
import { WorkerPool } from './pool.js'
import { machineThreads, threadsUnavailableReason, type ThreadsOption } from './support.js'
import { DEFAULT_WORKER_URL } from './workers.js'

/** Options of the threaded backend beyond the single-threaded ones. */
export interface ThreadedWasmOptions extends WasmModuleOptions, ThreadsModuleOptions {
  /** URL of the worker entry (default: worker.js / worker.ts next to this module). */
  workerUrl?: URL
}

/** Most threads 'auto' starts: the kernels are bound by memory bandwidth well before that. */
export const AUTO_MAX_THREADS = 16
/**
 * Multiply-adds per thread below which a call uses fewer threads (a call of W multiply-adds runs
 * on min(threads, floor(W / this)) threads; `threadsMinWork` overrides it): on the 2-core
 * development machine 2 threads break even near 0.3 M multiply-adds with fused granules (one
 * adapter per token) and win from about 0.5 M (bench/threads.ts).
 */
export const AUTO_WORK_PER_THREAD = 400_000
/** The same for calls run in two phases (control.ts MODE_PHASES): they pay a barrier more. */
export const AUTO_WORK_PER_THREAD_PHASES = 1_000_000
/**
 * What each thread of a call costs, in multiply-adds of one thread's time: 'auto' gives a call of W
 * multiply-adds at most sqrt(W / this) threads, the count that minimises W / p + p x cost. On the
 * 16-core GPU host (bench/threads-scaling.ts, T = 16, host arrays) each thread past the first cost
 * 0.02-0.033 ms (60-100 K multiply-adds at one thread's 3 G/s): gate_up ran 0.51 ms on 8 threads
 * and 0.67 on 16, qkv 0.33 on 8 and 0.44 on 11. Below 5 threads the linear rule above is the lower.
 */
export const AUTO_THREAD_COST = 80_000
export const AUTO_THREAD_COST_PHASES = 200_000
/**
 * On a machine of fewer than FEW_CORES cores, calls of one adapter per token and at most
 * SMALL_ENTRIES entries stay on one thread: there the other core is shared with the rest of the machine, and `threads: 2` made
 * calls of T = 2-4 1.0-1.4x slower than one thread (bench/threads-scaling.ts on 2 cores); on the
 * 16-core host the same calls ran 1.2-2.1x faster on 2-16 threads.
 */
export const FEW_CORES = 4
/** From this many cores, a call on ordinary arrays (copied by the main thread) takes at most half of them. */
export const COPY_CAP_CORES = 8
export const SMALL_ENTRIES = 4

/**
 * 'auto' on a loaded machine: a threaded call in which the main thread waited for the workers
 * more than STARVED_SHARE of its time (and more than STARVED_MS: a scheduler slice, not the usual
 * end of a call) means the workers did not get a core; after two such calls in a row, the next
 * SOLO_CALLS calls run on one thread, then threads are tried again.
 */
export const STARVED_SHARE = 0.3
export const STARVED_MS = 0.2
export const SOLO_CALLS = 16

export type { ThreadsOption }

/** The single-threaded backend's storage, with calls cut over a worker pool. */
export class ThreadedWasmBackend implements Backend, CallScheduler {
  readonly name = 'wasm' as const
  readonly chunkSize = CHUNK_SIZE
  readonly isSoftware = false
  readonly lost = false
  readonly device = null
  readonly transfers = null
  readonly kernels = null
  readonly maxCallBuffer = Number.POSITIVE_INFINITY
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
   * @param cores   the machine's cores (FEW_CORES)
   */
  constructor(
    readonly wasm: WasmBackend,
    readonly pool: WorkerPool | null,
    readonly mode: ThreadsOption,
    readonly threadsUnavailableReason: string | null,
    readonly minWork: number | null = null,
    readonly cores = FEW_CORES,
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
   * granules (one adapter per token), else 0; `copies`: its x and y are ordinary arrays, copied
   * in and out by the main thread.
   */
  partsFor(work: number, fusedEntries = 0, copies = false): number {
    if (!this.pool || this.pool.failed !== null) return 1
    if (this.forced !== null) return Math.min(this.forced, this.threads)
    // from the call's size, whatever the pool's: a call too small to gain stays on one thread
    if (this.minWork === 0) return this.threads
    if (fusedEntries > 0 && fusedEntries <= SMALL_ENTRIES && this.cores < FEW_CORES) return 1
    const fused = fusedEntries >= 2
    let parts = fused
      ? Math.min(Math.floor(work / (this.minWork ?? AUTO_WORK_PER_THREAD)), fusedEntries)
      : Math.floor(work / (this.minWork ?? AUTO_WORK_PER_THREAD_PHASES))
    if (this.minWork === null) parts = Math.min(parts, Math.floor(Math.sqrt(work / (fused ? AUTO_THREAD_COST : AUTO_THREAD_COST_PHASES))))
    // the main thread's copies bound a call on ordinary arrays: on a machine of many cores, past
    // half of them more threads only contend with the copies (16-core host, T = 64: 16 threads
    // 1.1-1.3x slower than 8); on fewer cores a compute-bound call still gains from every one
    if (copies && this.minWork === null && this.cores >= COPY_CAP_CORES) parts = Math.min(parts, this.cores >> 1)
    // no more threads than cores: more take turns on them (a pool of 8 on 2 cores ran T = 16
    // calls 3-5x slower on 8 threads than on one)
    return Math.max(1, Math.min(this.threads, this.cores, parts))
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
  const cores = await machineThreads()
  const count = threads === 'auto' ? Math.min(AUTO_MAX_THREADS, cores) : threads
  let reason = threadsUnavailableReason()
  if (reason === null && count > 1) {
    let pool: WorkerPool | null = null
    try {
      const m = await loadThreadsModule(options)
      pool = await WorkerPool.create(count - 1, m.module, m.memory, m.exports, options.workerUrl ?? DEFAULT_WORKER_URL(), undefined, cores)
      return new ThreadedWasmBackend(new WasmBackend(m.exports, m.variant), pool, threads, null, minWork, cores)
    } catch (e) {
      pool?.dispose()
      reason = e instanceof Error ? e.message : String(e)
    }
  }
  const single = await createWasmBackend(options)
  // more than one thread was asked for ('auto' included): say why there is one, when it is the runtime
  return new ThreadedWasmBackend(single, null, threads, threads !== 1 ? reason : null, minWork)
}
