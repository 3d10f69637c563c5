/**
 * The worker pool of the threaded wasm backend: W workers over one shared linear memory, each
 * with its own instance of the threads build; the main thread takes part in every job. See
 * protocol.ts for the job protocol: the main thread never blocks, it awaits Atomics.waitAsync
 * (or a worker's message where waitAsync is missing).
 */
import { LoraError } from '../../errors.js'
import * as P from './protocol.js'
import type { PartExports } from './protocol.js'
import { startWorker, type WorkerHandle } from './workers.js'

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
  /** Fused mode (protocol.ts MODE_FUSED): granules are runs of whole entries, no expand phase. */
  fused: boolean
  /** Fused: x is not in memory yet, the main thread copies each granule's x rows (copyXIn). */
  xByGranule: boolean
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

type WaitAsync = (a: Int32Array, i: number, v: number) => { async: boolean; value: Promise<string> | string }

export class WorkerPool {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(P.CTRL_INTS * 4))
  private readonly workers: WorkerHandle[] = []
  private readonly waitAsync: WaitAsync | null
  private gen = 0
  private failure: string | null = null
  private disposed = false
  private wakeMain: () => void = () => {}
  /** ms the main thread spent waiting for workers in the last job (at the barriers and the end). */
  waited = 0

  private constructor() {
    const wa = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync
    this.waitAsync = typeof wa === 'function' ? wa.bind(Atomics) : null
    this.ctrl[P.BY_MESSAGE] = this.waitAsync ? 0 : 1
  }

  /** Workers (the main thread adds one more part). */
  get size(): number {
    return this.workers.length
  }

  /** Why the pool can no longer run jobs (a worker failed), or null. */
  get failed(): string | null {
    return this.failure
  }

  /** Start `count` workers and wait until each instantiated the module over `memory`. */
  static async create(
    count: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    url: URL,
    timeoutMs = 10_000,
  ): Promise<WorkerPool> {
    const pool = new WorkerPool()
    count = Math.min(count, P.MAX_WORKERS)
    let ready = 0
    let settle: (error?: string) => void = () => {}
    const allReady = new Promise<void>((resolve, reject) => {
      settle = (error) => (error ? reject(new Error(error)) : resolve())
    })
    try {
      for (let w = 0; w < count; w++) {
        const handle = await startWorker(url, {
          message: (m) => {
            const msg = m as { ready?: number; error?: string }
            if (msg && typeof msg === 'object' && msg.error !== undefined) {
              pool.fail(msg.error)
              settle(msg.error)
            } else if (msg && typeof msg === 'object' && msg.ready !== undefined) {
              if (++ready === count) settle()
            } else pool.wakeMain() // a barrier flag, posted in message mode
          },
          failed: (reason) => {
            pool.fail(reason)
            settle(reason)
          },
        })
        pool.workers.push(handle)
        handle.post({ module, memory, ctrl: pool.ctrl.buffer, index: w })
      }
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        allReady,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`workers not ready after ${timeoutMs} ms`)), timeoutMs)
        }),
      ]).finally(() => clearTimeout(timer))
    } catch (e) {
      pool.dispose()
      throw new LoraError(
        'BACKEND_UNAVAILABLE',
        `could not start ${count} wasm worker threads: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      )
    }
    for (const w of pool.workers) w.keepAlive(false) // idle workers do not keep the process alive
    return pool
  }

  /**
   * Run one job on the main thread (`main`) and up to `parts - 1` workers (1 <= parts <= size + 1)
   * that claim its granules. The main thread makes the host copies (`copies`) once the workers are
   * started: in two phases, y before its shrink granules (the expand waits for it); fused, the x
   * rows (with xByGranule) and y rows of every granule in claim order (a worker's granule waits
   * for its rows, XIN and YIN), then
   * granules, copying the rows of finished ones out between them.
   */
  async run(job: JobArgs, parts: number, main: PartExports, copies: JobCopies): Promise<void> {
    this.check()
    this.waited = 0
    const c = this.ctrl
    const gen = (this.gen = (this.gen + 1) | 0)
    const granules = job.partStart.length - 1
    // no claims while the job is rewritten (a late worker of the previous job may still look)
    Atomics.store(c, P.NEXT1, P.NO_CLAIMS)
    Atomics.store(c, P.NEXT2, P.NO_CLAIMS)
    c[P.A_DTYPE] = job.dtype
    c[P.A_X] = job.x
    c[P.A_INF] = job.inF
    c[P.A_ROWS] = job.rows
    c[P.A_SEGS] = job.segs
    c[P.A_NUMSEG] = job.numSeg
    c[P.A_SLOTS] = job.slots
    c[P.A_NSLICES] = job.numSlices
    c[P.A_H] = job.h
    c[P.A_HROW] = job.hRow
    c[P.A_TASKS] = job.tasks
    c[P.A_Y] = job.y
    c[P.A_OUTF] = job.outF
    c[P.A_WIDTHS] = job.widths
    for (let p = 0; p < granules; p++) {
      const o = P.PART + 4 * p
      c[o] = job.partStart[p]
      c[o + 1] = job.partStart[p + 1] - job.partStart[p]
      c[o + 2] = job.cuts[p]
      c[o + 3] = job.cuts[p + 1]
    }
    c[P.GRANULES] = granules
    c[P.MODE] = job.fused ? P.MODE_FUSED : P.MODE_PHASES
    c[P.YIN] = 0
    c[P.XIN] = job.fused && job.xByGranule ? 0 : granules
    c.fill(0, P.GDONE, P.GDONE + granules)
    Atomics.store(c, P.DONE1, 0)
    Atomics.store(c, P.DONE2, 0)
    const open = (gen & P.TAG_MASK) << P.INDEX_BITS
    Atomics.store(c, P.NEXT1, open) // seq-cst: publishes every field above to the claimers
    Atomics.store(c, P.NEXT2, open)
    const woken = Math.min(parts - 1, this.workers.length)
    c[P.HELPERS] = woken
    Atomics.store(c, P.GEN, gen) // publishes the job to spinning workers
    for (let w = 0; w < woken; w++) P.wakeIfSleeping(c, w) // and wakes sleeping ones
    this.keepAlive(woken, true)
    if (job.fused) return this.runFused(gen, granules, woken, main, copies, job.xByGranule)
    let copyError: unknown = null
    try {
      try {
        copies.beforeShrink()
      } catch (e) {
        copyError = e // finish the job first: workers are reading its arguments
      }
      P.finish(c, P.DONE1, granules + 1, P.GO2, gen)
      P.claimShrink(c, main, gen)
      await this.until(P.GO2, gen)
      P.claimExpand(c, main, gen)
      await this.until(P.DONE, gen)
    } catch (e) {
      this.mainThrew(e)
    } finally {
      this.keepAlive(woken, false)
    }
    this.afterJob(copyError)
  }

  /** The main thread's part of a fused job: copies in, granules (with copies out between), the last copies out. */
  private async runFused(
    gen: number,
    granules: number,
    woken: number,
    main: PartExports,
    copies: JobCopies,
    xByGranule: boolean,
  ): Promise<void> {
    const c = this.ctrl
    let copyError: unknown = null
    const copied = new Uint8Array(granules)
    let left = granules
    const drain = () => {
      for (let i = 0; i < granules; i++) {
        if (copied[i] === 0 && Atomics.load(c, P.GDONE + i) === 1) {
          copied[i] = 1
          left--
          if (copyError === null) {
            try {
              copies.copyOut(i)
            } catch (e) {
              copyError = e
            }
          }
        }
      }
    }
    try {
      try {
        for (let i = 0; i < granules; i++) {
          if (xByGranule) {
            copies.copyXIn(i)
            Atomics.store(c, P.XIN, i + 1)
          }
          copies.copyIn(i)
          Atomics.store(c, P.YIN, i + 1)
        }
      } catch (e) {
        copyError = e // finish the job first: workers are reading its arguments
        Atomics.store(c, P.XIN, granules)
        Atomics.store(c, P.YIN, granules)
      }
      Atomics.notify(c, P.XIN)
      Atomics.notify(c, P.YIN)
      P.claimFused(c, main, gen, undefined, drain)
      drain()
      while (left > 0) {
        await this.until(P.DONE, gen)
        drain()
      }
    } catch (e) {
      this.mainThrew(e)
    } finally {
      this.keepAlive(woken, false)
    }
    this.afterJob(copyError)
  }

  /** The kernels trapped on the main thread: the job may be half done, so no job may follow it. */
  private mainThrew(e: unknown): never {
    this.fail(`the main thread's part of a job threw: ${String(e)}`)
    throw e
  }

  /** After a job: a copy's error (the job was finished first), then any worker's failure. */
  private afterJob(copyError: unknown): void {
    if (copyError !== null) throw copyError
    if (Atomics.load(this.ctrl, P.ERROR) !== 0) this.fail('a worker threw while running a job')
    this.check()
  }

  /**
   * Get the workers of a job of `parts` threads spinning (call before preparing the job, so that
   * their wake-up overlaps the preparation; run() wakes any that went back to sleep).
   */
  wake(parts: number): void {
    if (this.disposed) return
    for (let w = 0; w < Math.min(parts - 1, this.workers.length); w++) P.wakeWorker(this.ctrl, w)
  }

  /** Wait (without blocking the thread) until ctrl[flag] = gen, or the pool fails. */
  private async until(flag: number, gen: number): Promise<void> {
    const t0 = performance.now()
    for (;;) {
      const v = Atomics.load(this.ctrl, flag)
      if (v === gen) break
      this.check()
      if (this.waitAsync) {
        const r = this.waitAsync(this.ctrl, flag, v)
        if (r.async) await r.value
      } else {
        await new Promise<void>((resolve) => (this.wakeMain = resolve))
      }
    }
    this.waited += performance.now() - t0
  }

  private keepAlive(woken: number, on: boolean): void {
    // a pending waitAsync does not keep Node alive: the woken workers do, for the job's length
    for (let w = 0; w < woken; w++) this.workers[w].keepAlive(on)
  }

  private fail(reason: string): void {
    if (this.failure !== null || this.disposed) return
    this.failure = reason
    // release a main thread waiting at a barrier; it sees the failure and throws
    Atomics.notify(this.ctrl, P.GO2)
    Atomics.notify(this.ctrl, P.DONE)
    this.wakeMain()
  }

  private check(): void {
    if (this.disposed) throw new LoraError('DISPOSED', 'the wasm worker pool was disposed')
    if (this.failure !== null) throw new LoraError('BACKEND_UNAVAILABLE', `the wasm worker pool failed: ${this.failure}`)
  }

  /** End the workers (they leave their loop; terminated as well in case one is stuck). */
  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    Atomics.store(this.ctrl, P.QUIT, 1)
    for (let w = 0; w < this.workers.length; w++) {
      Atomics.add(this.ctrl, P.WAKE + w, 1)
      Atomics.notify(this.ctrl, P.WAKE + w)
    }
    Atomics.notify(this.ctrl, P.GO2)
    Atomics.notify(this.ctrl, P.DONE)
    for (const w of this.workers) w.terminate()
    this.wakeMain()
  }
}
